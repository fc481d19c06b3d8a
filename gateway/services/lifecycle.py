"""The certificate lifecycle services, built at start-up (one ``cleanup_ctx``), and their
background work: CRL refresh, renewal notices, abandoned applications, expired challenges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway import dbfaults, keys
from gateway.services.crl import CrlService
from gateway.services.issuance import IssuanceService
from gateway.services.issuers import IssuerRegistry
from gateway.services.notices import NoticeService
from gateway.services.ocsp import OcspResponder
from gateway.services.ocsp_budget import TokenBucket
from gateway.services.renewal import RenewalService
from gateway.services.revocation import RevocationService

log = logging.getLogger("gateway.lifecycle")
CRL_CHECK_SECONDS = 30.0  # how often the CRL task looks for due CRLs (at most)


@dataclass
class Lifecycle:
    issuers: IssuerRegistry
    issuance: IssuanceService
    renewal: RenewalService
    revocation: RevocationService
    crl: CrlService
    ocsp: OcspResponder
    notices: NoticeService


def build(app: web.Application) -> Lifecycle:
    config, clock, rt = app[keys.CONFIG], app[keys.CLOCK], app[keys.RUNTIME]
    issuers = IssuerRegistry.from_manifest(config.manifest_path)
    metrics = app[keys.METRICS]
    issuance = IssuanceService(
        pool=rt.db,
        signer=rt.signer,
        issuers=issuers,
        clock=clock,
        validity_days=config.certificate_validity_days,
        metrics=metrics,
    )
    crl = CrlService(
        pool=rt.db,
        signer=rt.signer,
        issuers=issuers,
        clock=clock,
        next_update_hours=config.crl_next_update_hours,
        refresh_seconds=config.crl_refresh_seconds,
    )
    return Lifecycle(
        issuers=issuers,
        issuance=issuance,
        renewal=RenewalService(
            pool=rt.db, clock=clock, window_days=config.renewal_window_days, issuance=issuance
        ),
        revocation=RevocationService(pool=rt.db, clock=clock, crl=crl, metrics=metrics),
        crl=crl,
        ocsp=OcspResponder(
            pool=rt.db,
            signer=rt.signer,
            issuers=issuers,
            clock=clock,
            metrics=metrics,
            budget=TokenBucket(config.ocsp_fresh_per_second, config.ocsp_fresh_burst),
            db_concurrency=max(1, config.pool_max // 4),
        ),
        notices=NoticeService(
            pool=rt.db,
            clock=clock,
            window_days=config.renewal_window_days,
            smtp_host=config.smtp_host,
            smtp_port=config.smtp_port,
            sender=config.smtp_from,
            portal_url=config.public_url,
        ),
    )


async def _every(seconds: float, name: str, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await job()
        except Exception as exc:  # keep going; the next round retries
            reason = dbfaults.outage_reason(exc)
            if reason is not None:  # one warning per database outage, not one per round
                dbfaults.outages.record(reason, name)
            else:
                log.warning("%s failed: %s", name, exc)
        await asyncio.sleep(seconds)


async def ctx(app: web.Application) -> AsyncIterator[None]:
    config, rt = app[keys.CONFIG], app[keys.RUNTIME]
    lc = build(app)
    await lc.issuers.sync(rt.db)
    rt.lifecycle = lc

    async def housekeeping() -> None:
        await lc.renewal.purge_expired()
        await lc.crl.refresh_due()

    tasks = []
    if lc.issuers.issuers:
        tasks.append(
            asyncio.create_task(
                _every(
                    min(CRL_CHECK_SECONDS, config.crl_refresh_seconds), "CRL refresh", housekeeping
                )
            )
        )
    # pending rows past their signing deadline: failed within seconds, so a subscriber whose
    # gateway died mid-application can apply again (see IssuanceService.sweep_abandoned)
    tasks.append(
        asyncio.create_task(
            _every(config.pending_sweep_seconds, "pending sweep", lc.issuance.sweep_abandoned)
        )
    )
    if lc.notices.enabled:
        tasks.append(
            asyncio.create_task(
                _every(config.notice_interval_seconds, "renewal notices", lc.notices.run_once)
            )
        )
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def lifecycle(request: web.Request) -> Lifecycle:
    return keys.runtime(request).lifecycle
