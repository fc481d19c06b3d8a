"""A subscriber's certificates: apply, list, view, download, renew."""

from __future__ import annotations

import ssl

from aiohttp import web

from db import audit
from db.queries import certificates as cert_q
from gateway import appkeys
from gateway.api import common, decode, models, present
from gateway.api.common import json_response
from gateway.errors import ApiError, Kind
from gateway.services.accounts import SubscriberAuth

routes = web.RouteTableDef()
PEM_TYPE = "application/x-pem-file"
DER_TYPE = "application/pkix-cert"


async def _own(request: web.Request, auth: SubscriberAuth) -> cert_q.CertificateRow:
    async with request.app[appkeys.DB].acquire() as conn:
        row = await cert_q.issued_by_id(
            conn, decode.path_id(request), subscriber_id=auth.account.subscriber_id
        )
    if row is None:
        raise ApiError(Kind.NOT_FOUND, "no such certificate")
    return row


@routes.post("/api/v1/certificates")
async def apply(request: web.Request) -> web.Response:
    auth = await common.subscriber(request)
    body = await decode.body(request, models.Apply)
    row = await request.app[appkeys.ISSUANCE].apply(
        account_id=auth.account.id,
        usage=body.usage,
        csr_text=body.csr,
        terms_version=body.terms_version,
        view=auth.view,
    )
    # 200: the stored certificate of an earlier attempt of this same application (a retry)
    return json_response(common.certificate(request, row), status=200 if row.replayed else 201)


@routes.get("/api/v1/certificates")
async def list_certificates(request: web.Request) -> web.Response:
    auth = await common.subscriber(request)
    async with request.app[appkeys.DB].acquire() as conn:
        rows = await cert_q.issued_for_subscriber(conn, auth.account.subscriber_id)
    return json_response(
        models.Certificates(certificates=[common.certificate(request, r) for r in rows])
    )


@routes.get("/api/v1/certificates/{id}")
async def get_certificate(request: web.Request) -> web.Response:
    auth = await common.subscriber(request)
    return json_response(common.certificate(request, await _own(request, auth)))


def _wants_der(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "").lower()
    return DER_TYPE in accept and (
        PEM_TYPE not in accept or accept.find(DER_TYPE) < accept.find(PEM_TYPE)
    )


@routes.get("/api/v1/certificates/{id}/certificate")
async def download(request: web.Request) -> web.Response:
    auth = await common.subscriber(request)
    row = await _own(request, auth)
    assert row.der is not None
    der = _wants_der(request)
    now = request.app[appkeys.CLOCK]()
    async with request.app[appkeys.DB].acquire() as conn, conn.transaction():
        first = await cert_q.mark_downloaded(conn, row.id, now)
        await audit.append(
            conn,
            actor=auth.account.account,
            action="certificate_downloaded",
            target=row.serial,
            details={"id": row.id, "first": first, "format": "der" if der else "pem"},
            at=now,
        )
    name = f"{row.serial}.{'cer' if der else 'pem'}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if der:
        return web.Response(body=row.der, content_type=DER_TYPE, headers=headers)
    return web.Response(
        body=ssl.DER_cert_to_PEM_cert(row.der).encode("ascii"),
        content_type=PEM_TYPE,
        headers=headers,
    )


@routes.get("/api/v1/certificates/{id}/renewal")
async def renewal_challenge(request: web.Request) -> web.Response:
    auth = await common.subscriber(request)
    challenge, expires = await request.app[appkeys.RENEWAL].challenge(
        subscriber_id=auth.account.subscriber_id, cert_id=decode.path_id(request)
    )
    return json_response(models.Challenge(challenge=challenge, expires_at=present.rfc3339(expires)))


@routes.post("/api/v1/certificates/{id}/renewal")
async def renew(request: web.Request) -> web.Response:
    auth = await common.subscriber(request)
    cert_id = decode.path_id(request)
    body = await decode.body(request, models.Renew)
    row = await request.app[appkeys.RENEWAL].renew(
        account_id=auth.account.id,
        subscriber_id=auth.account.subscriber_id,
        cert_id=cert_id,
        csr_text=body.csr,
        challenge=body.challenge,
        signature=body.signature,
        terms_version=body.terms_version,
    )
    return json_response(common.certificate(request, row), status=201)
