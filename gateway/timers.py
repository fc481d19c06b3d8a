"""The gateway's own background work, one ``cleanup_ctx`` each (``gateway.periodic``).

CRL refresh with the expired renewal challenges, the sweep of abandoned applications, renewal
notices, and the housekeeping of sessions, second-factor challenges and bounded tables. The
feature timers live beside their feature: OCSP pre-signing and CRL gauges
(``services/ocsp_presign.py``), audit checkpoints (``services/audit_checkpoint.py``), the CMP
purge (``cmp/routes.py``) and the operator page's sampler (``operator/routes.py``).
"""

from __future__ import annotations

from aiohttp import web

from gateway import appkeys
from gateway.periodic import CleanupCtx, Every, periodic
from gateway.services import housekeeping as purge

CRL_CHECK_SECONDS = 30.0  # how often the CRL task looks for due CRLs (at most)


def _crl_refresh(app: web.Application) -> Every | None:
    issuers, renewal, crl = app[appkeys.ISSUERS], app[appkeys.RENEWAL], app[appkeys.CRL]
    if not issuers.issuers:
        return None

    async def job() -> None:
        await renewal.purge_expired()
        await crl.refresh_due()

    return Every(min(CRL_CHECK_SECONDS, app[appkeys.CONFIG].crl_refresh_seconds), job)


def _pending_sweep(app: web.Application) -> Every:
    """Pending rows past their signing deadline: failed within seconds, so a subscriber whose
    gateway died mid-application can apply again (see IssuanceService.sweep_abandoned)."""
    return Every(app[appkeys.CONFIG].pending_sweep_seconds, app[appkeys.ISSUANCE].sweep_abandoned)


def _renewal_notices(app: web.Application) -> Every | None:
    notices = app[appkeys.NOTICES]
    if not notices.enabled:
        return None
    return Every(app[appkeys.CONFIG].notice_interval_seconds, notices.run_once)


def _housekeeping(app: web.Application) -> Every:
    """Expired sessions and second-factor challenges, and the bounded tables' old rows."""
    config, clock, db = app[appkeys.CONFIG], app[appkeys.CLOCK], app[appkeys.DB]
    sessions, factors = app[appkeys.SESSIONS], app[appkeys.OFFICER_FACTORS]
    bounds = purge.Bounds.from_config(config)

    async def job() -> None:
        now = clock()
        await sessions.purge_expired(db, now)
        await factors.purge_expired(now)
        await purge.purge(db, now, bounds)

    seconds = config.housekeeping_seconds
    return Every(seconds, job, first=seconds)


def timers() -> list[CleanupCtx]:
    """The gateway's own timers (after the services of ``composition.resources``)."""
    return [
        periodic("housekeeping", _housekeeping),
        periodic("CRL refresh", _crl_refresh),
        periodic("pending sweep", _pending_sweep),
        periodic("renewal notices", _renewal_notices),
    ]
