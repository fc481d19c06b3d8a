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

from gateway import appkeys, speech
from gateway.api import decode, models
from gateway.api.common import client_address, json_response
from gateway.api.openapi import spec
from gateway.api.present import rfc3339
from gateway.errors import ApiError, Kind

routes = web.RouteTableDef()
log = logging.getLogger("gateway.public")
READY_TIMEOUT = 2.0
# a new transaction's read-only flag (follows default_transaction_read_only) and standby mode
WRITABLE_SQL = (
    "SELECT pg_is_in_recovery() AS in_recovery, "
    "current_setting('transaction_read_only') AS read_only"
)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response(models.Health(status="ok"))


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    problems: dict[str, str] = {}
    signer_status = "ok"
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            # reachable is not enough: a read-only or recovering database fails every write
            row = await request.app[appkeys.DB].fetchrow(WRITABLE_SQL)
        if row["in_recovery"]:
            problems["database"] = "in_recovery"
        elif row["read_only"] == "on":
            problems["database"] = "read_only"
    except Exception as exc:  # any failure means "not ready"
        problems["database"] = type(exc).__name__
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            health = await request.app[appkeys.SIGNER].health()
        # "degraded": a worker is stalled, dead or healing while another serves (still ready)
        signer_status = str((health or {}).get("status", "ok"))
    except Exception as exc:
        problems["signer"] = getattr(exc, "message", None) or type(exc).__name__
    if problems:
        return json_response(
            models.Error(error=Kind.NOT_READY.value, message="not ready", checks=problems),
            status=503,
        )
    return json_response(models.Ready(status="ready", signer=signer_status))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[appkeys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@routes.get("/api/v1/captcha")
async def captcha(request: web.Request) -> web.Response:
    service = request.app[appkeys.CAPTCHA]
    if service is None:
        raise ApiError(Kind.CAPTCHA_DISABLED, "the captcha is switched off on this server")
    await request.app[appkeys.RATELIMITS].captcha(client=client_address(request))
    challenge = await service.create(request.app[appkeys.DB])
    return json_response(
        models.Captcha(captcha_id=challenge.id, image=challenge.data_url),
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/api/v1/captcha/audio")
async def captcha_audio(request: web.Request) -> web.Response:
    """The audio alternative (an extension of API.md): ``{"captcha_id", "audio":
    "data:audio/wav;base64,..."}``, spoken digits in the page's language (``lang`` zh-TW or en),
    a challenge of its own, answered and consumed like the image one at login."""
    service = request.app[appkeys.CAPTCHA]
    if service is None:
        raise ApiError(Kind.CAPTCHA_DISABLED, "the captcha is switched off on this server")
    query = decode.query(request, models.CaptchaAudioQuery)
    try:
        challenge = await service.create_audio(request.app[appkeys.DB], query.lang)
    except speech.SpeechUnavailable as exc:
        raise ApiError(Kind.SPEECH_UNAVAILABLE, "the audio captcha is not available") from exc
    return json_response(
        models.CaptchaAudio(captcha_id=challenge.id, audio=challenge.data_url),
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(spec(request.app, request.app[appkeys.CONFIG].public_url))


# -- CA certificates, CRLs, OCSP ------------------------------------------------------------

PKIX_CERT = "application/pkix-cert"
PKIX_CRL = "application/pkix-crl"
OCSP_RESPONSE = "application/ocsp-response"
MAX_OCSP_REQUEST = 16 * 1024


@routes.get("/ca")
async def ca_list(request: web.Request) -> web.Response:
    issuers = request.app[appkeys.ISSUERS].issuers
    return json_response(
        models.Issuers(
            issuers=[
                models.Issuer(
                    name=i.name,
                    subject=i.subject,
                    not_before=rfc3339(i.not_before),
                    not_after=rfc3339(i.not_after),
                    active=i.active,
                    role=i.role,
                )
                for i in issuers
            ]
        )
    )


@routes.get("/ca/chain.pem")
async def ca_chain(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[appkeys.ISSUERS].chain_pem(),
        content_type="application/x-pem-file",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@routes.get(r"/ca/{name:[a-z0-9-]+}.crt")
async def ca_certificate(request: web.Request) -> web.Response:
    issuer = request.app[appkeys.ISSUERS].get(request.match_info["name"])
    if issuer is None:
        raise ApiError(Kind.NOT_FOUND, "no such issuer")
    return web.Response(
        body=issuer.der, content_type=PKIX_CERT, headers={"Cache-Control": "public, max-age=3600"}
    )


@routes.get(r"/crl/{name:[a-z0-9-]+}.crl")
async def crl(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    der = await request.app[appkeys.CRL].current(name)
    if der is None:
        raise ApiError(Kind.NOT_FOUND, "no such issuer")
    issuer = request.app[appkeys.ISSUERS].get(name)
    # short caching: a revocation must show in the served CRL within 60 seconds; a root's
    # CRL changes only in a ceremony
    max_age = 3600 if issuer is not None and issuer.offline else 30
    return web.Response(
        body=der, content_type=PKIX_CRL, headers={"Cache-Control": f"public, max-age={max_age}"}
    )


def _ocsp_response(der: bytes) -> web.Response:
    return web.Response(body=der, content_type=OCSP_RESPONSE, headers={"Cache-Control": "no-cache"})


@routes.post("/ocsp")
async def ocsp_post(request: web.Request) -> web.Response:
    body = await request.read()
    return _ocsp_response(await request.app[appkeys.OCSP].respond(body))


@routes.get(r"/ocsp/{request:.+}")
async def ocsp_get(request: web.Request) -> web.Response:
    # RFC 6960 A.1: the URL-encoding of the base64 of the DER request. Taken from the raw path
    # (the router decodes "%2F" to "/" as well as "/oc%73p/" to "/ocsp/"): everything after the
    # first segment, which the router matched, whatever its spelling.
    parts = request.rel_url.raw_path.split("/", 2)
    text = unquote(parts[2]) if len(parts) == 3 else ""
    try:
        der = base64.b64decode(text, validate=True) if len(text) <= MAX_OCSP_REQUEST else b""
    except (binascii.Error, ValueError):
        der = b""
    return _ocsp_response(await request.app[appkeys.OCSP].respond(der))
