"""The aiohttp application factory: dependencies injected, one cleanup_ctx per resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from db.migrate import MigrationError, migrate_pool, pending
from db.pool import create_pool
from gateway import keys
from gateway.api import (
    certificates,
    public,
    ra,
    ra_certificates,
    ra_factors,
    ra_officers,
    session,
)
from gateway.captcha import CaptchaService
from gateway.cmp.routes import setup_cmp
from gateway.config import GatewayConfig, database_password, database_url
from gateway.metrics import GatewayMetrics
from gateway.middlewares import errors, observe, strict_transport_security
from gateway.operator.routes import setup_operator
from gateway.portal.routes import setup_portal
from gateway.services import audit_checkpoint, lifecycle, ocsp_presign
from gateway.services import housekeeping as purge
from gateway.services.accounts import AccountService
from gateway.services.hashing import HashingExecutor, default_workers
from gateway.services.officer_factors import OfficerFactors
from gateway.services.officers import OfficerService
from gateway.services.passwords import Passwords
from gateway.services.ratelimit import RateLimiter
from gateway.services.registration import RegistrationService
from gateway.services.sessions import SessionStore
from signer.client import SignerClient

log = logging.getLogger("gateway")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _default_signer(config: GatewayConfig) -> keys.SignerHealth:
    ssl_context = config.signer_tls.context() if config.signer_tls else None
    return SignerClient(list(config.signers), ssl_context=ssl_context)  # type: ignore[return-value]


def _database(pool: asyncpg.Pool | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[keys.CONFIG]
        own = pool is None
        db = (
            pool
            if pool is not None
            else await create_pool(
                database_url(config),
                min_size=config.pool_min,
                max_size=config.pool_max,
                password=database_password(config),
                acquire_timeout=config.acquire_timeout,
            )
        )
        try:
            if config.migrate_on_start:
                applied = await migrate_pool(db)
                if applied:
                    log.info("database migrated", extra={"applied": applied})
            else:  # production: the owner migrates (ca-admin migrate); refuse a stale schema
                async with db.acquire() as conn:
                    missing = await pending(conn)
                if missing:
                    raise MigrationError(
                        f"database schema lacks migration(s) {missing}: run `ca-admin migrate`"
                    )
            app[keys.RUNTIME].db = db
            yield
        finally:
            if own:
                await db.close()

    return ctx


def _signer(client: keys.SignerHealth | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        signer = client if client is not None else _default_signer(app[keys.CONFIG])
        try:
            await signer.start()
        except Exception as exc:  # the gateway starts anyway; /readyz tells
            log.warning("signer client did not start: %s", exc)
        app[keys.RUNTIME].signer = signer
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await signer.close()

    return ctx


async def _services(app: web.Application) -> AsyncIterator[None]:
    config, clock, rt = app[keys.CONFIG], app[keys.CLOCK], app[keys.RUNTIME]
    metrics = app[keys.METRICS]
    hashing = HashingExecutor(
        workers=config.password_workers or default_workers(),
        queue=config.password_queue,
        on_change=metrics.password_in_flight.set,
    )
    passwords = await asyncio.to_thread(
        Passwords, minimum=config.password_min, maximum=config.password_max, executor=hashing
    )
    sessions = SessionStore(
        idle_seconds=config.session_idle_timeout, absolute_seconds=config.session_absolute_timeout
    )
    rt.captcha = (
        CaptchaService(ttl_seconds=config.captcha_ttl, clock=clock, pepper=config.session_key)
        if config.captcha
        else None
    )
    rt.ratelimits = RateLimiter(pool=rt.db, clock=clock, limits=config.ratelimit, metrics=metrics)
    rt.accounts = AccountService(
        pool=rt.db,
        clock=clock,
        passwords=passwords,
        sessions=sessions,
        captcha=rt.captcha,
        metrics=metrics,
        max_failures=config.login_max_failures,
        officer_max_failures=config.officer_max_failures,
        limits=rt.ratelimits,
    )
    rt.registration = RegistrationService(pool=rt.db, clock=clock, passwords=passwords)
    rt.officer_factors = OfficerFactors(
        pool=rt.db,
        clock=clock,
        sessions=sessions,
        policy=config.officer_second_factor,  # type: ignore[arg-type]
        public_url=config.public_url,
        officer_max_failures=config.officer_max_failures,
    )
    rt.officers = OfficerService(pool=rt.db, clock=clock)
    bounds = purge.Bounds.from_config(config)

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(config.housekeeping_seconds)
            try:
                now = clock()
                await sessions.purge_expired(rt.db, now)
                await rt.officer_factors.purge_expired(now)
                await purge.purge(rt.db, now, bounds)
            except Exception as exc:  # keep going; the next round retries
                log.warning("housekeeping failed: %s", exc)

    task = asyncio.create_task(housekeeping())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        hashing.close()


def make_app(
    config: GatewayConfig,
    *,
    db_pool: asyncpg.Pool | None = None,
    signer_client: keys.SignerHealth | None = None,
    clock: keys.Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    app = web.Application(client_max_size=config.max_body, middlewares=[observe, errors])
    app[keys.CONFIG] = config
    app[keys.CLOCK] = clock or utcnow
    app[keys.REGISTRY] = registry if registry is not None else CollectorRegistry()
    app[keys.METRICS] = GatewayMetrics(app[keys.REGISTRY])
    app[keys.RUNTIME] = keys.Runtime()
    if config.https:
        app.on_response_prepare.append(strict_transport_security)
    app.cleanup_ctx.append(_database(db_pool))
    app.cleanup_ctx.append(_signer(signer_client))
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(lifecycle.ctx)
    app.cleanup_ctx.append(ocsp_presign.ctx)  # OCSP pre-signing, CRL and pool gauges
    app.cleanup_ctx.append(audit_checkpoint.ctx)  # signed audit checkpoints (and at shutdown)
    app.add_routes(public.routes)
    app.add_routes(session.routes)
    app.add_routes(ra.routes)
    app.add_routes(ra_certificates.routes)
    app.add_routes(ra_factors.routes)
    app.add_routes(ra_officers.routes)
    app.add_routes(certificates.routes)
    setup_cmp(app)  # CMP (RFC 4210/9480, 6712): /.well-known/cmp; after the lifecycle ctx
    setup_portal(app)  # pages, /static/, CSP and security headers
    setup_operator(app)  # /operator/: live charts from this gateway's metrics
    if not config.captcha:
        log.warning(
            '!!! CAPTCHA IS OFF ([gateway] captcha = "off"): logins are protected only by the '
            "account lock. Use this for automated deployments and tests only. !!!"
        )
    return app
