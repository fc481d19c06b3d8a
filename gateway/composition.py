"""The composition root: which object each service gets, built once at start-up.

One ``cleanup_ctx`` per resource and per service, in dependency order; each sets its own typed
key of ``gateway.appkeys`` and reads only the keys of what it depends on, so the order of
:func:`resources` is the dependency graph and a service missing a dependency fails at start-up
with a ``KeyError`` naming it. aiohttp runs these before it freezes the application and unwinds
them in reverse at shutdown (the pool closes last).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import asyncpg
from aiohttp import web

from db.migrate import MigrationError, migrate_pool, pending
from db.pool import create_pool
from gateway import appkeys
from gateway.captcha import CaptchaService
from gateway.config import GatewayConfig, database_password, database_url
from gateway.periodic import CleanupCtx
from gateway.services.accounts import AccountService
from gateway.services.crl import CrlService
from gateway.services.hashing import HashingExecutor, default_workers
from gateway.services.issuance import IssuanceService
from gateway.services.issuers import IssuerRegistry
from gateway.services.notices import NoticeService
from gateway.services.ocsp import OcspResponder
from gateway.services.ocsp_budget import TokenBucket
from gateway.services.officer_factors import OfficerFactors
from gateway.services.officers import OfficerService
from gateway.services.passwords import Passwords
from gateway.services.ratelimit import RateLimiter
from gateway.services.registration import RegistrationService
from gateway.services.renewal import RenewalService
from gateway.services.revocation import RevocationService
from gateway.services.sessions import SessionStore
from signer.client import SignerClient, SignerOps

log = logging.getLogger("gateway")
T = TypeVar("T")


def _provide(key: web.AppKey[T], make: Callable[[web.Application], T]) -> CleanupCtx:
    """A ``cleanup_ctx`` for a service that holds nothing to release."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[key] = make(app)
        yield

    ctx.__qualname__ = f"provide[{key!r}]"
    return ctx


def _database(pool: asyncpg.Pool | None) -> CleanupCtx:
    """The pool (``pool`` from a test, else opened from the config), its schema checked."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[appkeys.CONFIG]
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
            app[appkeys.DB] = db
            metrics = app[appkeys.METRICS]
            metrics.db_pool.pool = lambda: db  # the pool's gauges
            try:
                yield
            finally:
                metrics.db_pool.pool = None
        finally:
            if own:
                await db.close()

    return ctx


def _default_signer(config: GatewayConfig) -> SignerOps:
    ssl_context = config.signer_tls.context() if config.signer_tls else None
    return SignerClient(list(config.signers), ssl_context=ssl_context)  # type: ignore[return-value]


def _signer(client: SignerOps | None) -> CleanupCtx:
    """The signer client (``client`` from a test, else from ``[gateway] signers``)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        signer = client if client is not None else _default_signer(app[appkeys.CONFIG])
        try:
            await signer.start()
        except Exception as exc:  # the gateway starts anyway; /readyz tells
            log.warning("signer client did not start: %s", exc)
        app[appkeys.SIGNER] = signer
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await signer.close()

    return ctx


async def _passwords(app: web.Application) -> AsyncIterator[None]:
    """Password hashing in its own worker processes, released at shutdown."""
    config, metrics = app[appkeys.CONFIG], app[appkeys.METRICS]
    hashing = HashingExecutor(
        workers=config.password_workers or default_workers(),
        queue=config.password_queue,
        on_change=metrics.password_in_flight.set,
    )
    try:
        app[appkeys.PASSWORDS] = await asyncio.to_thread(
            Passwords, minimum=config.password_min, maximum=config.password_max, executor=hashing
        )
        yield
    finally:
        hashing.close()


def _sessions(app: web.Application) -> SessionStore:
    config = app[appkeys.CONFIG]
    return SessionStore(
        idle_seconds=config.session_idle_timeout, absolute_seconds=config.session_absolute_timeout
    )


def _captcha(app: web.Application) -> CaptchaService | None:
    config = app[appkeys.CONFIG]
    if not config.captcha:
        return None
    return CaptchaService(
        ttl_seconds=config.captcha_ttl, clock=app[appkeys.CLOCK], pepper=config.session_key
    )


def _ratelimits(app: web.Application) -> RateLimiter:
    return RateLimiter(
        pool=app[appkeys.DB],
        clock=app[appkeys.CLOCK],
        limits=app[appkeys.CONFIG].ratelimit,
        metrics=app[appkeys.METRICS],
    )


def _accounts(app: web.Application) -> AccountService:
    config = app[appkeys.CONFIG]
    return AccountService(
        pool=app[appkeys.DB],
        clock=app[appkeys.CLOCK],
        passwords=app[appkeys.PASSWORDS],
        sessions=app[appkeys.SESSIONS],
        captcha=app[appkeys.CAPTCHA],
        metrics=app[appkeys.METRICS],
        max_failures=config.login_max_failures,
        officer_max_failures=config.officer_max_failures,
        limits=app[appkeys.RATELIMITS],
    )


def _registration(app: web.Application) -> RegistrationService:
    return RegistrationService(
        pool=app[appkeys.DB], clock=app[appkeys.CLOCK], passwords=app[appkeys.PASSWORDS]
    )


def _officer_factors(app: web.Application) -> OfficerFactors:
    config = app[appkeys.CONFIG]
    return OfficerFactors(
        pool=app[appkeys.DB],
        clock=app[appkeys.CLOCK],
        sessions=app[appkeys.SESSIONS],
        policy=config.officer_second_factor,  # type: ignore[arg-type]
        public_url=config.public_url,
        officer_max_failures=config.officer_max_failures,
    )


def _officers(app: web.Application) -> OfficerService:
    return OfficerService(pool=app[appkeys.DB], clock=app[appkeys.CLOCK])


async def _issuers(app: web.Application) -> AsyncIterator[None]:
    """The issuer manifest, its certificates recorded in the database."""
    issuers = IssuerRegistry.from_manifest(app[appkeys.CONFIG].manifest_path)
    await issuers.sync(app[appkeys.DB])
    app[appkeys.ISSUERS] = issuers
    yield


def _issuance(app: web.Application) -> IssuanceService:
    return IssuanceService(
        pool=app[appkeys.DB],
        signer=app[appkeys.SIGNER],
        issuers=app[appkeys.ISSUERS],
        clock=app[appkeys.CLOCK],
        validity_days=app[appkeys.CONFIG].certificate_validity_days,
        metrics=app[appkeys.METRICS],
    )


def _crl(app: web.Application) -> CrlService:
    config = app[appkeys.CONFIG]
    return CrlService(
        pool=app[appkeys.DB],
        signer=app[appkeys.SIGNER],
        issuers=app[appkeys.ISSUERS],
        clock=app[appkeys.CLOCK],
        next_update_hours=config.crl_next_update_hours,
        refresh_seconds=config.crl_refresh_seconds,
    )


def _renewal(app: web.Application) -> RenewalService:
    return RenewalService(
        pool=app[appkeys.DB],
        clock=app[appkeys.CLOCK],
        window_days=app[appkeys.CONFIG].renewal_window_days,
        issuance=app[appkeys.ISSUANCE],
    )


def _revocation(app: web.Application) -> RevocationService:
    return RevocationService(
        pool=app[appkeys.DB],
        clock=app[appkeys.CLOCK],
        crl=app[appkeys.CRL],
        metrics=app[appkeys.METRICS],
    )


def _ocsp(app: web.Application) -> OcspResponder:
    config = app[appkeys.CONFIG]
    return OcspResponder(
        pool=app[appkeys.DB],
        signer=app[appkeys.SIGNER],
        issuers=app[appkeys.ISSUERS],
        clock=app[appkeys.CLOCK],
        metrics=app[appkeys.METRICS],
        budget=TokenBucket(config.ocsp_fresh_per_second, config.ocsp_fresh_burst),
        db_concurrency=max(1, config.pool_max // 4),
    )


def _notices(app: web.Application) -> NoticeService:
    config = app[appkeys.CONFIG]
    return NoticeService(
        pool=app[appkeys.DB],
        clock=app[appkeys.CLOCK],
        window_days=config.renewal_window_days,
        smtp_host=config.smtp_host,
        smtp_port=config.smtp_port,
        sender=config.smtp_from,
        portal_url=config.public_url,
    )


def resources(db_pool: asyncpg.Pool | None, signer_client: SignerOps | None) -> list[CleanupCtx]:
    """Every resource and service, dependencies first."""
    return [
        _database(db_pool),
        _signer(signer_client),
        _passwords,
        _provide(appkeys.SESSIONS, _sessions),
        _provide(appkeys.CAPTCHA, _captcha),
        _provide(appkeys.RATELIMITS, _ratelimits),
        _provide(appkeys.ACCOUNTS, _accounts),
        _provide(appkeys.REGISTRATION, _registration),
        _provide(appkeys.OFFICER_FACTORS, _officer_factors),
        _provide(appkeys.OFFICERS, _officers),
        _issuers,
        _provide(appkeys.ISSUANCE, _issuance),
        _provide(appkeys.CRL, _crl),
        _provide(appkeys.RENEWAL, _renewal),
        _provide(appkeys.REVOCATION, _revocation),
        _provide(appkeys.OCSP, _ocsp),
        _provide(appkeys.NOTICES, _notices),
    ]
