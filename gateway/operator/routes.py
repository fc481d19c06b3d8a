"""``/operator/``: the operator page (static HTML + JS, strict CSP) and its JSON feed.

The page itself holds no data and is served to anyone; ``/operator/api/stats`` needs an RA
officer session (the page shows a login form that uses ``POST /api/v1/ra/session``). The feed
is computed from this gateway's own metrics registry and the signer's health answer, sampled
every 2 seconds by a background task, so a fresh page shows the last five minutes at once.
With several gateways behind a load balancer each page shows the instance that answers; the
Grafana dashboard in ``monitoring/`` shows them all.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from gateway import appkeys
from gateway.api import common
from gateway.api.common import json_response
from gateway.operator.stats import Sampler, snapshot
from gateway.periodic import Every, periodic

log = logging.getLogger("gateway.operator")
STATIC = Path(__file__).resolve().parent / "static"
SAMPLER = web.AppKey("operator_sampler", Sampler)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SIGNER_TIMEOUT = 1.0
_FILES = {"operator.js": "text/javascript", "operator.css": "text/css", "uplot.css": "text/css"}


def _static(name: str, content_type: str) -> web.Response:
    response = web.Response(
        body=(STATIC / name).read_bytes(), content_type=content_type, charset="utf-8"
    )
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


async def page(request: web.Request) -> web.Response:
    return _static("operator.html", "text/html")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/operator/")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES:
        raise web.HTTPNotFound()
    return _static(name, _FILES[name])


async def stats(request: web.Request) -> web.Response:
    await common.officer(request)
    body = request.app[SAMPLER].body()
    return json_response(body, headers={"Cache-Control": "no-store"})


def _sampling(app: web.Application) -> Every:
    """One snapshot of the metrics and the signer's health every ``sampler.interval``."""
    sampler, registry, signer = app[SAMPLER], app[appkeys.REGISTRY], app[appkeys.SIGNER]

    async def sample() -> None:
        snap = snapshot(registry)
        try:
            async with asyncio.timeout(SIGNER_TIMEOUT):
                health = await signer.health()
            workers = health.get("workers") or []
            snap.queue = float(health.get("queue", 0))
            snap.workers = len(workers)
            snap.workers_ready = sum(1 for w in workers if w.get("state") == "ready")
            snap.signer_status = str(health.get("status", "unknown"))
        except Exception:  # the page shows "down"; the next sample tries again
            snap.signer_status = "down"
        sampler.add(snap)

    return Every(sampler.interval, sample)


def setup_operator(app: web.Application, *, interval: float = 2.0) -> None:
    app[SAMPLER] = Sampler(app[appkeys.REGISTRY], interval=interval)
    app.cleanup_ctx.append(periodic("operator sampler", _sampling))
    app.router.add_get("/operator", redirect)
    app.router.add_get("/operator/", page)
    app.router.add_get("/operator/static/{name}", asset)
    app.router.add_get("/operator/api/stats", stats)
