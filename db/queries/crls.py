"""CRL state per issuer: the CRL number sequence and the latest signed CRL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class StoredCrl:
    issuer_id: int
    der: bytes | None
    number: int | None
    this_update: datetime | None
    next_update: datetime | None
    dirty: bool


async def current(conn: asyncpg.Connection, issuer_id: int) -> StoredCrl | None:
    r = await conn.fetchrow(
        """SELECT issuer_id, der, der_number, this_update, next_update, dirty
           FROM crl_state WHERE issuer_id = $1""",
        issuer_id,
    )
    if r is None:
        return None
    return StoredCrl(
        r["issuer_id"],
        bytes(r["der"]) if r["der"] is not None else None,
        r["der_number"],
        r["this_update"],
        r["next_update"],
        r["dirty"],
    )


async def allocate_number(conn: asyncpg.Connection, issuer_id: int) -> int:
    """Next CRL number; the row stays locked until the caller's transaction ends, so numbers
    are handed out in the same order as the revocation lists are read."""
    return await conn.fetchval(
        """UPDATE crl_state SET crl_number = crl_number + 1, dirty = false
           WHERE issuer_id = $1 RETURNING crl_number""",
        issuer_id,
    )


async def revoked_entries(
    conn: asyncpg.Connection, issuer_id: int, *, prefetch: int = 5000
) -> AsyncIterator[tuple[str, datetime, str]]:
    """(serial hex, revoked_at, reason) of every revoked certificate of the issuer, streamed
    with a server-side cursor (the caller's transaction must be open)."""
    async for r in conn.cursor(
        """SELECT c.serial, r.revoked_at, r.reason FROM revocations r
           JOIN certificates c ON c.id = r.certificate_id
           WHERE c.issuer_id = $1 ORDER BY r.certificate_id""",
        issuer_id,
        prefetch=prefetch,
    ):
        yield r[0], r[1], r[2]


async def store(
    conn: asyncpg.Connection,
    issuer_id: int,
    *,
    number: int,
    der: bytes,
    this_update: datetime,
    next_update: datetime,
) -> bool:
    """Keep the CRL unless a later number is stored already (another gateway was faster)."""
    done = await conn.fetchval(
        """UPDATE crl_state SET der = $3, der_number = $2, this_update = $4, next_update = $5
           WHERE issuer_id = $1 AND (der_number IS NULL OR der_number < $2)
           RETURNING issuer_id""",
        issuer_id,
        number,
        der,
        this_update,
        next_update,
    )
    return done is not None


async def mark_dirty(conn: asyncpg.Connection, issuer_id: int) -> None:
    await conn.execute("UPDATE crl_state SET dirty = true WHERE issuer_id = $1", issuer_id)


async def due(
    conn: asyncpg.Connection, *, refreshed_before: datetime, next_update_before: datetime
) -> list[int]:
    """Issuers whose CRL is missing, marked dirty, older than the refresh interval or close to
    its nextUpdate."""
    rows = await conn.fetch(
        """SELECT issuer_id FROM crl_state
           WHERE der IS NULL OR dirty OR this_update < $1 OR next_update < $2
           ORDER BY issuer_id""",
        refreshed_before,
        next_update_before,
    )
    return [r[0] for r in rows]
