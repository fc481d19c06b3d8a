"""Public endpoints: health, readiness, metrics, captcha, OpenAPI, CA certificates, CRLs, OCSP.

OCSP errors (a request that does not parse, an issuer that is not ours, the signer down) are
answered the RFC 6960 way: HTTP 200 with an unsigned ``malformedRequest`` / ``unauthorized`` /
``tryLater`` OCSP response, never a JSON error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from urllib.parse import unquote

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from gateway import keys
from gateway.api.common import client_address, json_response, rfc3339
from gateway.api.openapi import spec
from gateway.errors import ApiError, Kind
from gateway.services.lifecycle import lifecycle

routes = web.RouteTableDef()
log = logging.getLogger("gateway.public")
READY_TIMEOUT = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    problems: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await keys.runtime(request).db.fetchval("SELECT 1")
    except Exception as exc:  # any failure means "not ready"
        problems["database"] = type(exc).__name__
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await keys.runtime(request).signer.health()
    except Exception as exc:
        problems["signer"] = getattr(exc, "message", None) or type(exc).__name__
    if problems:
        return json_response(
            {"error": Kind.NOT_READY.value, "message": "not ready", "checks": problems},
            status=503,
        )
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@routes.get("/api/v1/captcha")
async def captcha(request: web.Request) -> web.Response:
    service = keys.runtime(request).captcha
    if service is None:
        raise ApiError(Kind.CAPTCHA_DISABLED, "the captcha is switched off on this server")
    await keys.runtime(request).ratelimits.captcha(client=client_address(request))
    challenge = await service.create(keys.runtime(request).db)
    return json_response({"captcha_id": challenge.id, "image": challenge.data_url},
                         headers={"Cache-Control": "no-store"})


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(spec(request.app[keys.CONFIG].public_url))


# -- CA certificates, CRLs, OCSP ------------------------------------------------------------

PKIX_CERT = "application/pkix-cert"
PKIX_CRL = "application/pkix-crl"
OCSP_RESPONSE = "application/ocsp-response"
MAX_OCSP_REQUEST = 16 * 1024


@routes.get("/ca")
async def ca_list(request: web.Request) -> web.Response:
    issuers = lifecycle(request).issuers.issuers
    return json_response({"issuers": [
        {"name": i.name, "subject": i.subject, "not_before": rfc3339(i.not_before),
         "not_after": rfc3339(i.not_after), "active": i.active, "role": i.role}
        for i in issuers
    ]})


@routes.get("/ca/chain.pem")
async def ca_chain(request: web.Request) -> web.Response:
    return web.Response(body=lifecycle(request).issuers.chain_pem(),
                        content_type="application/x-pem-file",
                        headers={"Cache-Control": "public, max-age=3600"})


@routes.get(r"/ca/{name:[a-z0-9-]+}.crt")
async def ca_certificate(request: web.Request) -> web.Response:
    issuer = lifecycle(request).issuers.get(request.match_info["name"])
    if issuer is None:
        raise ApiError(Kind.NOT_FOUND, "no such issuer")
    return web.Response(body=issuer.der, content_type=PKIX_CERT,
                        headers={"Cache-Control": "public, max-age=3600"})


@routes.get(r"/crl/{name:[a-z0-9-]+}.crl")
async def crl(request: web.Request) -> web.Response:
    der = await lifecycle(request).crl.current(request.match_info["name"])
    if der is None:
        raise ApiError(Kind.NOT_FOUND, "no such issuer")
    # short caching: a revocation must show in the served CRL within 60 seconds
    return web.Response(body=der, content_type=PKIX_CRL,
                        headers={"Cache-Control": "public, max-age=30"})


def _ocsp_response(der: bytes) -> web.Response:
    return web.Response(body=der, content_type=OCSP_RESPONSE,
                        headers={"Cache-Control": "no-cache"})


@routes.post("/ocsp")
async def ocsp_post(request: web.Request) -> web.Response:
    body = await request.read()
    return _ocsp_response(await lifecycle(request).ocsp.respond(body))


@routes.get(r"/ocsp/{request:.+}")
async def ocsp_get(request: web.Request) -> web.Response:
    # RFC 6960 A.1: the URL-encoding of the base64 of the DER request
    raw = request.rel_url.raw_path.split("/ocsp/", 1)[1]
    text = unquote(raw)
    try:
        der = base64.b64decode(text, validate=True) if len(text) <= MAX_OCSP_REQUEST else b""
    except (binascii.Error, ValueError):
        der = b""
    return _ocsp_response(await lifecycle(request).ocsp.respond(der))
