"""CMP over HTTP (RFC 6712): ``POST /.well-known/cmp`` and ``/.well-known/cmp/p/<profile>``
(``signing``, the default, or ``encryption``), ``application/pkixcmp`` both ways; every answer,
errors included, is a PKIMessage with HTTP 200. Also the RA action that issues the one-time
enrolment secret."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway import keys
from gateway.api import common, decode, models
from gateway.api.common import json_response
from gateway.cmp.enrolment import EnrolmentSecrets
from gateway.cmp.failures import CmpFailure
from gateway.cmp.metrics import CmpMetrics
from gateway.cmp.server import CmpServer
from gateway.cmp.signing import SignerResponseSigner

log = logging.getLogger("gateway.cmp")
MEDIA = "application/pkixcmp"
PURGE_SECONDS = 60.0
routes = web.RouteTableDef()


@dataclass
class CmpState:
    server: CmpServer | None = None
    secrets: EnrolmentSecrets | None = None


STATE = web.AppKey("cmp", CmpState)


async def _serve(request: web.Request, profile: str | None) -> web.Response:
    server = request.app[STATE].server
    assert server is not None
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
    enrolment = request.app[STATE].secrets
    assert enrolment is not None
    issued = await enrolment.issue(
        subscriber_id=decode.path_id(request, "id"),
        officer_id=auth.officer.id,
        officer_login=auth.officer.login,
    )
    return json_response(
        models.CmpSecret(
            reference=issued.reference,
            secret=issued.secret,
            expires_at=common.rfc3339(issued.expires_at),
        ),
        status=201,
    )


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    config, clock, rt = app[keys.CONFIG], app[keys.CLOCK], app[keys.RUNTIME]
    lc = rt.lifecycle
    state = app[STATE]
    state.secrets = EnrolmentSecrets(pool=rt.db, clock=clock, days=config.cmp_secret_days)
    state.server = CmpServer(
        pool=rt.db,
        clock=clock,
        issuance=lc.issuance,
        revocation=lc.revocation,
        issuers=lc.issuers,
        renewal_window_days=config.renewal_window_days,
        max_skew_seconds=config.cmp_max_skew_seconds,
        replay_window_seconds=config.cmp_replay_window_seconds,
        metrics=CmpMetrics(app[keys.REGISTRY]),
        response_signer=SignerResponseSigner(rt.signer) if hasattr(rt.signer, "cmp") else None,
    )

    async def purge() -> None:
        while True:
            await asyncio.sleep(PURGE_SECONDS)
            try:
                assert state.server is not None
                await state.server.purge()
            except Exception as exc:  # keep going; the next round retries
                log.warning("cmp purge failed: %s", exc)

    task = asyncio.create_task(purge())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup_cmp(app: web.Application) -> None:
    """The CMP endpoint and its services (after the lifecycle services are built)."""
    app[STATE] = CmpState()
    app.cleanup_ctx.append(_ctx)
    app.add_routes(routes)


__all__ = ["CmpFailure", "setup_cmp"]
