"""OCSP pre-signing: every unexpired certificate of an issuer gets a stored, signed response.

The responder then answers from the table without a signature per request (RFC 5019 style, no
nonce). The job reads certificates in id order in chunks, sends them to the signer in batches of
``batch`` typed ``OcspRequest`` items (several RPCs in flight so the workers never wait), and
upserts each batch's responses in one statement. The signer builds, signs and verifies every
response; the job only stores what comes back.

Revocation needs no hook: the responder serves a stored response only when its status (and
revocation time) equals the certificate's current state, else it signs afresh within its budget
(see ``db.queries.ocsp.StoredResponse.fresh`` and ``gateway/services/ocsp.py``). The job's next
run replaces the stale row.

Several gateways may run the periodic job; a PostgreSQL advisory lock lets one of them work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from cryptography import x509

from db.queries import ocsp as q
from gateway import appkeys
from gateway.periodic import CleanupCtx, Every, periodic
from signer.client import SignerOps
from signer.protocol import OcspRequest

log = logging.getLogger("gateway.ocsp_presign")

LOCK_KEY = 0x4F43535050  # "OCSPP"
DEFAULT_VALIDITY = timedelta(days=1)
BULK_DEADLINE_SECONDS = 10.0
DEFAULT_REFRESH_MARGIN = timedelta(hours=12)  # re-sign when less validity than this is left


@dataclass
class PresignStats:
    issuer: str
    signed: int = 0
    stored: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)


class OcspPresigner:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        signer: SignerOps,
        clock: Any,
        metrics: Any = None,
        batch: int = 256,
        inflight: int = 8,
        chunk: int = 4096,
        validity: timedelta = DEFAULT_VALIDITY,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.clock = clock
        self.metrics = metrics
        self.batch = batch
        self.inflight = inflight
        self.chunk = chunk
        self.validity = validity

    async def run(self, issuer: str, *, refresh_margin: timedelta | None = None) -> PresignStats:
        """Pre-sign for ``issuer``. ``refresh_margin`` None re-signs every unexpired certificate;
        else only those without a stored response valid for at least that long."""
        stats = PresignStats(issuer)
        t0 = time.perf_counter()
        issuer_id = await q.issuer_id(self.pool, issuer)
        if issuer_id is None:
            raise LookupError(f"unknown issuer {issuer!r}")
        now: datetime = self.clock()
        this_update = now.replace(microsecond=0)
        next_update = this_update + self.validity
        refresh_before = None if refresh_margin is None else now + refresh_margin
        sem = asyncio.Semaphore(self.inflight)
        tasks: set[asyncio.Task[None]] = set()

        failures: list[BaseException] = []

        async def one(certs: list[q.CertState]) -> None:
            try:
                await self._batch(issuer, issuer_id, certs, this_update, next_update, stats)
            except Exception as exc:  # kept: finished tasks leave ``tasks`` before gather
                failures.append(exc)
            finally:
                sem.release()

        after = 0
        try:
            while not failures:
                certs = await q.due_chunk(
                    self.pool,
                    issuer_id,
                    now=now,
                    refresh_before=refresh_before,
                    after_id=after,
                    limit=self.chunk,
                )
                if not certs:
                    break
                after = certs[-1].id
                for i in range(0, len(certs), self.batch):
                    await sem.acquire()
                    task = asyncio.create_task(one(certs[i : i + self.batch]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if len(certs) < self.chunk:
                    break
            if tasks:
                await asyncio.gather(*tasks)
            if failures:
                raise failures[0]
        finally:
            for task in tasks:
                task.cancel()
        stats.seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.ocsp_presigned.labels(issuer=issuer).inc(stats.stored)
            self.metrics.ocsp_presign_seconds.observe(stats.seconds)
        return stats

    async def _batch(
        self,
        issuer: str,
        issuer_id: int,
        certs: list[q.CertState],
        this_update: datetime,
        next_update: datetime,
        stats: PresignStats,
    ) -> None:
        tu, nu = int(this_update.timestamp()), int(next_update.timestamp())
        requests = [
            OcspRequest(
                issuer=issuer,
                serial=int(c.serial, 16),
                status=c.status,
                this_update=tu,
                next_update=nu,
                revoked_at=int(c.revoked_at.timestamp()) if c.revoked_at is not None else None,
                reason=c.reason,
            )
            for c in certs
        ]
        # bulk: the signer serves these only while no applicant waits; under full load the
        # deadline sheds them and the next round (or the responder, on demand) catches up
        results = await self.signer.sign_ocsp(
            requests, time.time() + BULK_DEADLINE_SECONDS, bulk=True
        )
        ok_certs: list[q.CertState] = []
        ders: list[bytes] = []
        for cert, res in zip(certs, results, strict=True):
            if res.error is not None or res.der is None:
                stats.errors += 1
                kind = res.error.kind.value if res.error is not None else "empty"
                stats.error_kinds[kind] = stats.error_kinds.get(kind, 0) + 1
                continue
            ok_certs.append(cert)
            ders.append(res.der)
        stats.signed += len(ders)
        # not `stats.stored += await ...`: that reads the counter before awaiting, and
        # concurrent batches would overwrite each other's sums
        stored = await q.store_batch(
            self.pool, issuer_id, ok_certs, ders, this_update=this_update, next_update=next_update
        )
        stats.stored += stored

    async def run_locked(
        self, issuers: list[str], *, refresh_margin: timedelta | None
    ) -> list[PresignStats] | None:
        """Run for each issuer unless another gateway holds the job's lock (then None)."""
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return None
            try:
                out = []
                for name in issuers:
                    out.append(await self.run(name, refresh_margin=refresh_margin))
                return out
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


PRESIGN_INTERVAL_SECONDS = 600.0
PRESIGN_START_DELAY_SECONDS = 5.0  # let the gateway finish starting
GAUGE_INTERVAL_SECONDS = 30.0


def _presign(app: web.Application) -> Every | None:
    """Incremental runs: only certificates without a response valid for the refresh margin."""
    signer, issuers = app[appkeys.SIGNER], app[appkeys.ISSUERS]
    if not hasattr(signer, "sign_ocsp") or not issuers.issuers:
        return None
    presigner = OcspPresigner(
        pool=app[appkeys.DB],
        signer=signer,  # type: ignore[arg-type]
        clock=app[appkeys.CLOCK],
        metrics=app[appkeys.METRICS],
    )

    async def job() -> None:
        names = [i.name for i in issuers.issuers if i.name in issuers.ids and not i.offline]
        done = await presigner.run_locked(names, refresh_margin=DEFAULT_REFRESH_MARGIN)
        for stats in done or []:
            if stats.signed or stats.errors:
                log.info(
                    "OCSP responses pre-signed",
                    extra={
                        "issuer": stats.issuer,
                        "signed": stats.signed,
                        "errors": stats.errors,
                        "seconds": round(stats.seconds, 2),
                    },
                )

    # a failed round: the next one retries; the responder signs on demand meanwhile
    return Every(PRESIGN_INTERVAL_SECONDS, job, first=PRESIGN_START_DELAY_SECONDS)


def _crl_gauges(app: web.Application) -> Every:
    """thisUpdate/nextUpdate of each stored CRL, for the "CRL older than nextUpdate" alert."""
    pool, issuers, metrics = app[appkeys.DB], app[appkeys.ISSUERS], app[appkeys.METRICS]

    async def job() -> None:
        rows = await pool.fetch(
            "SELECT issuer_id, this_update, next_update FROM crl_state WHERE der IS NOT NULL"
        )
        for r in rows:
            issuer = issuers.by_id(r["issuer_id"])
            if issuer is None:
                continue
            metrics.crl_this_update.labels(issuer=issuer.name).set(r["this_update"].timestamp())
            metrics.crl_next_update.labels(issuer=issuer.name).set(r["next_update"].timestamp())
        for issuer in issuers.issuers:  # roots: the ceremony's CRL file
            if issuer.offline and issuer.crl_path is not None and issuer.crl_path.exists():
                crl = x509.load_der_x509_crl(issuer.crl_path.read_bytes())
                metrics.crl_this_update.labels(issuer=issuer.name).set(
                    crl.last_update_utc.timestamp()
                )
                if crl.next_update_utc is not None:
                    metrics.crl_next_update.labels(issuer=issuer.name).set(
                        crl.next_update_utc.timestamp()
                    )

    return Every(GAUGE_INTERVAL_SECONDS, job)


def timers() -> list[CleanupCtx]:
    """The periodic job and the CRL gauges (after the services are built). The responder
    reads the stored answers itself: gateway/services/ocsp.py."""
    return [periodic("OCSP pre-signing", _presign), periodic("CRL gauges", _crl_gauges)]
