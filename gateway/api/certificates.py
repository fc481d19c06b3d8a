"""A subscriber's own certificates (read side; applying and renewing come with issuance)."""

from __future__ import annotations

from aiohttp import web

from db.queries import certificates as cert_q
from gateway import keys
from gateway.api import common
from gateway.api.common import json_response
from gateway.errors import ApiError, Kind
from gateway.services.certificates import certificate_object

routes = web.RouteTableDef()


async def _own(request: web.Request) -> list[cert_q.CertificateRow]:
    auth = await common.subscriber(request)
    async with keys.runtime(request).db.acquire() as conn:
        return await cert_q.issued_for_subscriber(conn, auth.account.subscriber_id)


def _objects(request: web.Request, rows: list[cert_q.CertificateRow]) -> list[dict]:
    now = request.app[keys.CLOCK]()
    window = request.app[keys.CONFIG].renewal_window_days
    return [certificate_object(r, now, window) for r in rows]


@routes.get("/api/v1/certificates")
async def list_certificates(request: web.Request) -> web.Response:
    return json_response({"certificates": _objects(request, await _own(request))})


@routes.get("/api/v1/certificates/{id}")
async def get_certificate(request: web.Request) -> web.Response:
    rows = await _own(request)
    raw = request.match_info["id"]
    for obj in _objects(request, rows):
        if str(obj["id"]) == raw:
            return json_response(obj)
    raise ApiError(Kind.NOT_FOUND, "no such certificate")
