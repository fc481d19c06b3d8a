"""CRLs: one per issuer (rotated-out issuers too), signed by the signer, stored in the database
so every gateway serves the same bytes.

Regenerated synchronously after each revocation and by a periodic task when the stored one is
older than ``[gateway] crl_refresh_seconds``, marked dirty (a regeneration failed) or within
half of ``[policy] crl_next_update_hours`` of its nextUpdate.

A root's CRL is not signed here at all: the root key is offline, so ``ca-keys`` signs it in a
ceremony (long nextUpdate) and the gateway serves that file as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, timedelta
from pathlib import Path

import asyncpg

from db.queries import crls as crl_q
from gateway.clock import Clock
from gateway.services.issuers import IssuerRegistry
from signer.client import SignerOps
from signer.protocol import CrlRequest, RevokedEntry

log = logging.getLogger("gateway.crl")
SIGN_DEADLINE_SECONDS = 30.0


def _read_file(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        log.warning("no root CRL at %s: run ca-keys root-crl", path)
        return None


class CrlService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        signer: SignerOps,
        issuers: IssuerRegistry,
        clock: Clock,
        next_update_hours: int,
        refresh_seconds: int,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.issuers = issuers
        self.clock = clock
        self.next_update = timedelta(hours=next_update_hours)
        self.refresh = timedelta(seconds=refresh_seconds)

    async def regenerate(self, issuer_id: int) -> bytes:
        """Allocate the next CRL number, read the revocations, sign, store. Raises SignerError."""
        issuer = self.issuers.by_id(issuer_id)
        if issuer is None or issuer.offline:
            raise KeyError(issuer_id)
        now = self.clock().astimezone(UTC).replace(microsecond=0)
        next_update = now + self.next_update
        async with self.pool.acquire() as conn, conn.transaction():
            number = await crl_q.allocate_number(conn, issuer_id)
            entries = tuple(
                [
                    RevokedEntry(int(serial, 16), int(at.timestamp()), reason)
                    async for serial, at, reason in crl_q.revoked_entries(conn, issuer_id)
                ]
            )
        request = CrlRequest(
            issuer=issuer.name,
            crl_number=number,
            this_update=int(now.timestamp()),
            next_update=int(next_update.timestamp()),
            entries=entries,
        )
        try:
            der = await self.signer.sign_crl(request, time.time() + SIGN_DEADLINE_SECONDS)
        except Exception:
            async with self.pool.acquire() as conn:
                await crl_q.mark_dirty(conn, issuer_id)
            raise
        async with self.pool.acquire() as conn:
            await crl_q.store(
                conn, issuer_id, number=number, der=der, this_update=now, next_update=next_update
            )
        log.info(
            "CRL signed",
            extra={"issuer": issuer.name, "crl_number": number, "entries": len(entries)},
        )
        return der

    async def current(self, issuer_name: str) -> bytes | None:
        """The stored CRL of an issuer (made now if there is none yet); None: no such issuer.
        A root's is the file its last ceremony wrote (None while there is none)."""
        issuer = self.issuers.get(issuer_name)
        if issuer is not None and issuer.offline:
            return await asyncio.to_thread(_read_file, issuer.crl_path)
        issuer_id = self.issuers.ids.get(issuer_name)
        if issuer_id is None:
            return None
        async with self.pool.acquire() as conn:
            stored = await crl_q.current(conn, issuer_id)
        if stored is not None and stored.der is not None:
            return stored.der
        return await self.regenerate(issuer_id)  # a SignerError is answered at the web edge

    async def refresh_due(self) -> int:
        """Regenerate every CRL that is due; returns how many were signed."""
        now = self.clock()
        async with self.pool.acquire() as conn:
            due = await crl_q.due(
                conn,
                refreshed_before=now - self.refresh,
                next_update_before=now + self.next_update / 2,
            )
        done = 0
        for issuer_id in due:
            issuer = self.issuers.by_id(issuer_id)
            if issuer is None or issuer.offline:
                continue  # no longer in the manifest, or a root (its CRL comes from a ceremony)
            try:
                await self.regenerate(issuer_id)
                done += 1
            except Exception as exc:
                log.warning("CRL regeneration failed: %s", exc)
        return done
