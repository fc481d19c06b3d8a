"""Pre-signed OCSP responses (migration 003): the job's scan and upsert, the responder's lookup.

The scan walks an issuer's unexpired issued certificates by id (keyset pagination over the
primary key), so each chunk is one short query and no statement holds the whole table.
Writes go as one ``INSERT ... SELECT unnest(...)`` per batch: one round trip and one plan for
hundreds of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class CertState:
    """One certificate as the pre-signing job needs it: what its OCSP answer must state."""

    id: int
    serial: str
    revoked_at: datetime | None
    reason: str | None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "good"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The responder's view of one serial: the row's current state and the stored response."""

    certificate_id: int
    issuer_id: int
    cert_status: str  # pending, issued, failed
    not_after: datetime
    revoked_at: datetime | None
    reason: str | None
    der: bytes | None  # the stored response, if any
    stored_status: str | None
    stored_revoked_at: datetime | None
    this_update: datetime | None
    next_update: datetime | None

    def fresh(self, now: datetime, margin_seconds: float = 0.0) -> bytes | None:
        """The stored DER when it is still valid and states exactly the current status."""
        if self.der is None or self.next_update is None or self.this_update is None:
            return None
        if self.cert_status != "issued" or self.this_update > now:
            return None
        if (self.next_update - now).total_seconds() <= margin_seconds:
            return None
        current = "revoked" if self.revoked_at is not None else "good"
        if self.stored_status != current or self.stored_revoked_at != self.revoked_at:
            return None  # revoked (or un-revoked) since it was signed: sign afresh
        return self.der


async def issuer_id(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> int | None:
    return await conn.fetchval("SELECT id FROM issuers WHERE name = $1", name)


async def due_chunk(
    conn: asyncpg.Connection | asyncpg.Pool,
    issuer: int,
    *,
    now: datetime,
    refresh_before: datetime | None,
    after_id: int,
    limit: int,
) -> list[CertState]:
    """Unexpired issued certificates of ``issuer`` with id > ``after_id``, in id order.

    With ``refresh_before`` set, certificates whose stored response is valid beyond it and
    states the current status are skipped (an incremental run); None re-signs all.
    """
    rows = await conn.fetch(
        """SELECT c.id, c.serial, r.revoked_at, r.reason
           FROM certificates c
           LEFT JOIN revocations r ON r.certificate_id = c.id
           LEFT JOIN ocsp_responses o ON o.certificate_id = c.id
           WHERE c.issuer_id = $1 AND c.status = 'issued' AND c.not_after > $2
             AND c.id > $3
             AND ($5::timestamptz IS NULL OR o.certificate_id IS NULL
                  OR o.next_update <= $5
                  OR o.status <> CASE WHEN r.revoked_at IS NULL THEN 'good' ELSE 'revoked' END
                  OR o.revoked_at IS DISTINCT FROM r.revoked_at)
           ORDER BY c.id
           LIMIT $4""",
        issuer,
        now,
        after_id,
        limit,
        refresh_before,
    )
    return [CertState(r["id"], r["serial"], r["revoked_at"], r["reason"]) for r in rows]


async def store_batch(
    conn: asyncpg.Connection | asyncpg.Pool,
    issuer: int,
    certs: list[CertState],
    ders: list[bytes],
    *,
    this_update: datetime,
    next_update: datetime,
) -> int:
    """Upsert one batch of signed responses; returns the number of rows written."""
    if not certs:
        return 0
    result = await conn.execute(
        """INSERT INTO ocsp_responses AS o
               (certificate_id, issuer_id, status, revoked_at, der, this_update, next_update)
           SELECT u.id, $1, u.status, u.revoked_at, u.der, $2, $3
           FROM unnest($4::bigint[], $5::text[], $6::timestamptz[], $7::bytea[])
                AS u(id, status, revoked_at, der)
           ON CONFLICT (certificate_id) DO UPDATE
              SET status = EXCLUDED.status, revoked_at = EXCLUDED.revoked_at,
                  der = EXCLUDED.der, this_update = EXCLUDED.this_update,
                  next_update = EXCLUDED.next_update, produced_at = now()
              WHERE o.this_update <= EXCLUDED.this_update""",
        issuer,
        this_update,
        next_update,
        [c.id for c in certs],
        [c.status for c in certs],
        [c.revoked_at for c in certs],
        ders,
    )
    return int(result.rsplit(" ", 1)[-1])


async def lookup(conn: asyncpg.Connection | asyncpg.Pool, serial: str) -> StoredResponse | None:
    """One round trip: the certificate's current state and its stored response (if any)."""
    r = await conn.fetchrow(
        """SELECT c.id, c.issuer_id, c.status, c.not_after, r.revoked_at, r.reason,
                  o.der, o.status AS stored_status, o.revoked_at AS stored_revoked_at,
                  o.this_update, o.next_update
           FROM certificates c
           LEFT JOIN revocations r ON r.certificate_id = c.id
           LEFT JOIN ocsp_responses o ON o.certificate_id = c.id
           WHERE c.serial = $1""",
        serial,
    )
    if r is None:
        return None
    return StoredResponse(
        r["id"],
        r["issuer_id"],
        r["status"],
        r["not_after"],
        r["revoked_at"],
        r["reason"],
        bytes(r["der"]) if r["der"] is not None else None,
        r["stored_status"],
        r["stored_revoked_at"],
        r["this_update"],
        r["next_update"],
    )


@dataclass(frozen=True, slots=True)
class Coverage:
    certificates: int  # unexpired issued certificates
    fresh: int  # of which have a stored response valid now and stating the current status


async def coverage(conn: asyncpg.Connection | asyncpg.Pool, issuer: int, now: datetime) -> Coverage:
    r = await conn.fetchrow(
        """SELECT count(*) AS certificates,
                  count(*) FILTER (
                      WHERE o.next_update > $2
                        AND o.status = CASE WHEN r.revoked_at IS NULL THEN 'good'
                                            ELSE 'revoked' END
                        AND o.revoked_at IS NOT DISTINCT FROM r.revoked_at) AS fresh
           FROM certificates c
           LEFT JOIN revocations r ON r.certificate_id = c.id
           LEFT JOIN ocsp_responses o ON o.certificate_id = c.id
           WHERE c.issuer_id = $1 AND c.status = 'issued' AND c.not_after > $2""",
        issuer,
        now,
    )
    return Coverage(int(r["certificates"]), int(r["fresh"]))
