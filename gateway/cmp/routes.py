"""CMP over HTTP (RFC 6712): ``POST /.well-known/cmp`` and ``/.well-known/cmp/p/<profile>``
(``signing``, the default, or ``encryption``), ``application/pkixcmp`` both ways; every answer,
errors included, is a PKIMessage with HTTP 200. Also the RA action that issues the one-time
enrolment secret."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import appkeys
from gateway.api import common, decode, models, present
from gateway.api.common import json_response
from gateway.cmp.enrolment import EnrolmentSecrets
from gateway.cmp.failures import CmpFailure
from gateway.cmp.metrics import CmpMetrics
from gateway.cmp.server import CmpServer
from gateway.cmp.signing import SignerResponseSigner
from gateway.periodic import Every, periodic

log = logging.getLogger("gateway.cmp")
MEDIA = "application/pkixcmp"
PURGE_SECONDS = 60.0
routes = web.RouteTableDef()


async def _serve(request: web.Request, profile: str | None) -> web.Response:
    server = request.app[appkeys.CMP_SERVER]
    der = await request.read()
    if request.content_type != MEDIA:
        log.info("cmp request with content type %r", request.content_type)
    answer = await server.handle(der, profile)
    return web.Response(body=answer, content_type=MEDIA)


@routes.post("/.well-known/cmp")
async def cmp_default(request: web.Request) -> web.Response:
    return await _serve(request, None)


@routes.post("/.well-known/cmp/p/{profile}")
async def cmp_profile(request: web.Request) -> web.Response:
    return await _serve(request, request.match_info["profile"])


@routes.post("/api/v1/ra/subscribers/{id}/cmp-secret")
async def issue_secret(request: web.Request) -> web.Response:
    auth = await common.officer(request)
    issued = await request.app[appkeys.CMP_SECRETS].issue(
        subscriber_id=decode.path_id(request, "id"),
        officer_id=auth.officer.id,
        officer_login=auth.officer.login,
    )
    return json_response(
        models.CmpSecret(
            reference=issued.reference,
            secret=issued.secret,
            expires_at=present.rfc3339(issued.expires_at),
        ),
        status=201,
    )


async def _services(app: web.Application) -> AsyncIterator[None]:
    """The enrolment secrets and the CMP server, over the lifecycle services."""
    config, clock, db, signer = (
        app[appkeys.CONFIG],
        app[appkeys.CLOCK],
        app[appkeys.DB],
        app[appkeys.SIGNER],
    )
    app[appkeys.CMP_SECRETS] = EnrolmentSecrets(pool=db, clock=clock, days=config.cmp_secret_days)
    app[appkeys.CMP_SERVER] = CmpServer(
        pool=db,
        clock=clock,
        issuance=app[appkeys.ISSUANCE],
        revocation=app[appkeys.REVOCATION],
        issuers=app[appkeys.ISSUERS],
        renewal_window_days=config.renewal_window_days,
        max_skew_seconds=config.cmp_max_skew_seconds,
        replay_window_seconds=config.cmp_replay_window_seconds,
        metrics=CmpMetrics(app[appkeys.REGISTRY]),
        response_signer=SignerResponseSigner(signer) if hasattr(signer, "cmp") else None,
    )
    yield


def _purge(app: web.Application) -> Every:
    """Expired transactions and replay records."""
    return Every(PURGE_SECONDS, app[appkeys.CMP_SERVER].purge, first=PURGE_SECONDS)


def setup_cmp(app: web.Application) -> None:
    """The CMP endpoint and its services (after the lifecycle services are built)."""
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(periodic("cmp purge", _purge))
    app.add_routes(routes)


__all__ = ["CmpFailure", "setup_cmp"]
