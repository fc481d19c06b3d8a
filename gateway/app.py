"""The aiohttp application factory: dependencies injected (a test passes its own pool, signer
client, clock and registry), then the resources and services (``gateway.composition``), the
timers, the routes and the middlewares."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway import appkeys, composition, timers
from gateway.api import (
    certificates,
    public,
    ra,
    ra_certificates,
    ra_factors,
    ra_officers,
    session,
)
from gateway.clock import Clock, utcnow
from gateway.cmp.routes import setup_cmp
from gateway.config import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.middlewares import errors, observe, strict_transport_security
from gateway.operator.routes import setup_operator
from gateway.portal.routes import setup_portal
from gateway.services import audit_checkpoint, ocsp_presign
from signer.client import SignerOps

log = logging.getLogger("gateway")


def make_app(
    config: GatewayConfig,
    *,
    db_pool: asyncpg.Pool | None = None,
    signer_client: SignerOps | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    app = web.Application(client_max_size=config.max_body, middlewares=[observe, errors])
    app[appkeys.CONFIG] = config
    app[appkeys.CLOCK] = clock or utcnow
    app[appkeys.REGISTRY] = registry if registry is not None else CollectorRegistry()
    app[appkeys.METRICS] = GatewayMetrics(app[appkeys.REGISTRY])
    if config.https:
        app.on_response_prepare.append(strict_transport_security)
    app.cleanup_ctx.extend(composition.resources(db_pool, signer_client))
    app.cleanup_ctx.extend(timers.timers())
    app.cleanup_ctx.extend(ocsp_presign.timers())  # OCSP pre-signing, CRL gauges
    app.cleanup_ctx.append(audit_checkpoint.timer)  # signed audit checkpoints
    app.add_routes(public.routes)
    app.add_routes(session.routes)
    app.add_routes(ra.routes)
    app.add_routes(ra_certificates.routes)
    app.add_routes(ra_factors.routes)
    app.add_routes(ra_officers.routes)
    app.add_routes(certificates.routes)
    setup_cmp(app)  # CMP (RFC 4210/9480, 6712): /.well-known/cmp; after the services
    setup_portal(app)  # pages, /static/, CSP and security headers
    setup_operator(app)  # /operator/: live charts from this gateway's metrics
    if not config.captcha:
        log.warning(
            '!!! CAPTCHA IS OFF ([gateway] captcha = "off"): logins are protected only by the '
            "account lock. Use this for automated deployments and tests only. !!!"
        )
    return app
