"""Certificate rows: the pending → issued | failed life of an application, and lookups.

A row is written ``pending`` (committed) before the signer is asked; it becomes ``issued`` with
its DER in the same transaction as the audit event, or ``failed`` with a reason. Only issued
rows are ever shown to anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class CertificateRow:
    id: int
    serial: str
    usage: str
    status: str  # pending, issued, failed
    subject: str
    issuer_subject: str
    der: bytes | None
    not_before: datetime
    not_after: datetime
    downloaded_at: datetime | None
    superseded_by: int | None
    revoked_at: datetime | None
    revocation_reason: str | None = None
    subscriber_id: int = 0
    issuer_id: int = 0
    issuer_name: str = ""
    public_key_sha256: bytes = b""
    renewed_from: int | None = None


_COLS = """c.id, c.serial, c.usage, c.status, c.subject, i.subject AS issuer_subject,
    c.der, c.not_before, c.not_after, c.downloaded_at, c.superseded_by,
    r.revoked_at, r.reason AS revocation_reason, c.subscriber_id, c.issuer_id,
    i.name AS issuer_name, c.public_key_sha256, c.renewed_from"""
_FROM = """FROM certificates c
    JOIN issuers i ON i.id = c.issuer_id
    LEFT JOIN revocations r ON r.certificate_id = c.id"""


def _row(r: asyncpg.Record) -> CertificateRow:
    return CertificateRow(
        id=r["id"], serial=r["serial"], usage=r["usage"], status=r["status"],
        subject=r["subject"], issuer_subject=r["issuer_subject"],
        der=bytes(r["der"]) if r["der"] is not None else None,
        not_before=r["not_before"], not_after=r["not_after"],
        downloaded_at=r["downloaded_at"], superseded_by=r["superseded_by"],
        revoked_at=r["revoked_at"], revocation_reason=r["revocation_reason"],
        subscriber_id=r["subscriber_id"], issuer_id=r["issuer_id"],
        issuer_name=r["issuer_name"], public_key_sha256=bytes(r["public_key_sha256"]),
        renewed_from=r["renewed_from"],
    )


async def issued_for_subscribers(
    conn: asyncpg.Connection, subscriber_ids: list[int]
) -> dict[int, list[CertificateRow]]:
    """Issued certificates of these subscribers, by subscriber id."""
    out: dict[int, list[CertificateRow]] = {}
    if not subscriber_ids:
        return out
    rows = await conn.fetch(
        f"""SELECT {_COLS} {_FROM}
            WHERE c.subscriber_id = ANY($1::bigint[]) AND c.status = 'issued'
            ORDER BY c.id""",
        subscriber_ids,
    )
    for r in rows:
        out.setdefault(r["subscriber_id"], []).append(_row(r))
    return out


async def issued_for_subscriber(
    conn: asyncpg.Connection, subscriber_id: int
) -> list[CertificateRow]:
    return (await issued_for_subscribers(conn, [subscriber_id])).get(subscriber_id, [])


async def issued_by_id(
    conn: asyncpg.Connection, cert_id: int, *, subscriber_id: int | None = None,
    for_update: bool = False,
) -> CertificateRow | None:
    """One issued certificate; with ``subscriber_id``, only if it is that subscriber's."""
    lock = " FOR UPDATE OF c" if for_update else ""
    r = await conn.fetchrow(
        f"""SELECT {_COLS} {_FROM}
            WHERE c.id = $1 AND c.status = 'issued'
              AND ($2::bigint IS NULL OR c.subscriber_id = $2){lock}""",
        cert_id, subscriber_id,
    )
    return _row(r) if r else None


async def issued_by_serial(
    conn: asyncpg.Connection, serial: str, *, for_update: bool = False
) -> CertificateRow | None:
    lock = " FOR UPDATE OF c" if for_update else ""
    r = await conn.fetchrow(
        f"""SELECT {_COLS} {_FROM}
            WHERE c.serial = $1 AND c.status = 'issued'{lock}""",
        serial,
    )
    return _row(r) if r else None


async def insert_pending(
    conn: asyncpg.Connection, *, serial: str, issuer_id: int, subscriber_id: int, usage: str,
    profile: str, subject: str, public_key_sha256: bytes, not_before: datetime,
    not_after: datetime, terms_version: str, now: datetime,
) -> int:
    return await conn.fetchval(
        """INSERT INTO certificates (serial, issuer_id, subscriber_id, usage, profile, status,
               subject, public_key_sha256, not_before, not_after, terms_version, created_at)
           VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11) RETURNING id""",
        serial, issuer_id, subscriber_id, usage, profile, subject, public_key_sha256,
        not_before, not_after, terms_version, now,
    )


@dataclass(frozen=True)
class Intent:
    """One application's pending row, for ``insert_pending_batch``."""

    subscriber_id: int
    account_id: int
    usage: str
    exclude_id: int | None  # the certificate being renewed: it does not block
    serial: str
    issuer_id: int
    profile: str
    subject: str
    public_key_sha256: bytes
    not_before: datetime
    not_after: datetime
    terms_version: str
    now: datetime
    pending_since: datetime


async def lock_subscribers(conn: asyncpg.Connection, subscriber_ids: list[int]) -> None:
    """Row locks on these subscribers, taken in id order (no deadlock between batches)."""
    await conn.execute(
        "SELECT 1 FROM subscribers WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
        subscriber_ids,
    )


async def insert_pending_batch(conn: asyncpg.Connection, intents: list[Intent]) -> dict[str, int]:
    """For each intent that nothing blocks (see ``blocking_certificate``; of several intents for
    one subscriber and usage only the first): record the terms acceptance and write the pending
    row. Returns {serial: id} of the rows written. Run it in a transaction after
    ``lock_subscribers``: this statement's snapshot then sees every committed application."""
    rows = await conn.fetch(
        """WITH u AS (
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                                    $5::text[], $6::int[], $7::text[], $8::text[], $9::bytea[],
                                    $10::timestamptz[], $11::timestamptz[], $12::text[],
                                    $13::timestamptz[], $14::timestamptz[])
                   WITH ORDINALITY AS u(sid, aid, usage, excl, serial, issuer_id, profile,
                                        subject, pk, nb, na, tv, now, pending_since, ord)
           ), ok AS (
               -- LATERAL ... LIMIT 1: one index probe per application (a NOT EXISTS becomes
               -- an anti-join that may scan all certificates for a handful of rows)
               SELECT DISTINCT ON (u.sid, u.usage) u.* FROM u
               LEFT JOIN LATERAL (
                   SELECT c.id FROM certificates c
                   LEFT JOIN revocations r ON r.certificate_id = c.id
                   WHERE c.subscriber_id = u.sid AND c.usage = u.usage
                     AND (u.excl IS NULL OR c.id <> u.excl)
                     AND ((c.status = 'issued' AND r.certificate_id IS NULL
                           AND c.superseded_by IS NULL AND c.not_after > u.now)
                          OR (c.status = 'pending' AND c.created_at >= u.pending_since))
                   LIMIT 1) b ON true
               WHERE b.id IS NULL
               ORDER BY u.sid, u.usage, u.ord
           ), terms AS (
               INSERT INTO terms_acceptances (account_id, terms_version, accepted_at)
               SELECT aid, tv, min(now) FROM ok GROUP BY aid, tv
               ON CONFLICT (account_id, terms_version) DO NOTHING
           )
           INSERT INTO certificates (serial, issuer_id, subscriber_id, usage, profile, status,
               subject, public_key_sha256, not_before, not_after, terms_version, created_at)
           SELECT serial, issuer_id, sid, usage, profile, 'pending', subject, pk, nb, na, tv, now
           FROM ok ORDER BY ord
           RETURNING id, serial""",
        [i.subscriber_id for i in intents], [i.account_id for i in intents],
        [i.usage for i in intents], [i.exclude_id for i in intents],
        [i.serial for i in intents], [i.issuer_id for i in intents],
        [i.profile for i in intents], [i.subject for i in intents],
        [i.public_key_sha256 for i in intents], [i.not_before for i in intents],
        [i.not_after for i in intents], [i.terms_version for i in intents],
        [i.now for i in intents], [i.pending_since for i in intents],
    )
    return {r["serial"]: r["id"] for r in rows}


async def apply_batch(conn: asyncpg.Connection, intents: list[Intent]) -> dict[str, int]:
    """``lock_subscribers`` + ``insert_pending_batch`` in one round trip and one transaction
    (the ``certificates_apply_batch`` function, migration 004): call it outside a transaction;
    the pending rows are committed when it returns. Returns {serial: id} of the rows written."""
    rows = await conn.fetch(
        "SELECT cert_id, cert_serial FROM certificates_apply_batch($1::bigint[], $2::bigint[],"
        " $3::text[], $4::bigint[], $5::text[], $6::int[], $7::text[], $8::text[], $9::bytea[],"
        " $10::timestamptz[], $11::timestamptz[], $12::text[], $13::timestamptz[],"
        " $14::timestamptz[])",
        [i.subscriber_id for i in intents], [i.account_id for i in intents],
        [i.usage for i in intents], [i.exclude_id for i in intents],
        [i.serial for i in intents], [i.issuer_id for i in intents],
        [i.profile for i in intents], [i.subject for i in intents],
        [i.public_key_sha256 for i in intents], [i.not_before for i in intents],
        [i.not_after for i in intents], [i.terms_version for i in intents],
        [i.now for i in intents], [i.pending_since for i in intents],
    )
    return {r[1]: r[0] for r in rows}


async def mark_issued_batch(
    conn: asyncpg.Connection, items: list[tuple[int, bytes, str, datetime, datetime]],
    now: datetime,
) -> list[CertificateRow]:
    """(id, der, subject, not_before, not_after) of pending rows become issued; returns the
    rows that were still pending (an abandoned one was swept meanwhile), as stored."""
    items = sorted(items)  # row locks in id order
    rows = await conn.fetch(
        """UPDATE certificates c SET status = 'issued', der = u.der, subject = u.subject,
               not_before = u.nb, not_after = u.na, issued_at = $6
           FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::timestamptz[],
                       $5::timestamptz[]) AS u(id, der, subject, nb, na), issuers i
           WHERE c.id = ANY($1::bigint[]) AND c.id = u.id AND c.status = 'pending'
             AND i.id = c.issuer_id
           RETURNING c.id, c.serial, c.usage, c.status, c.subject, i.subject AS issuer_subject,
               c.der, c.not_before, c.not_after, c.downloaded_at, c.superseded_by,
               NULL::timestamptz AS revoked_at, NULL::text AS revocation_reason,
               c.subscriber_id, c.issuer_id, i.name AS issuer_name, c.public_key_sha256,
               c.renewed_from""",
        [i[0] for i in items], [i[1] for i in items], [i[2] for i in items],
        [i[3] for i in items], [i[4] for i in items], now,
    )
    return [_row(r) for r in rows]


async def mark_issued(
    conn: asyncpg.Connection, cert_id: int, *, der: bytes, subject: str, not_before: datetime,
    not_after: datetime, now: datetime,
) -> bool:
    done = await conn.fetchval(
        """UPDATE certificates SET status = 'issued', der = $2, subject = $3,
               not_before = $4, not_after = $5, issued_at = $6
           WHERE id = $1 AND status = 'pending' RETURNING id""",
        cert_id, der, subject, not_before, not_after, now,
    )
    return done is not None


async def mark_failed(conn: asyncpg.Connection, cert_id: int, reason: str) -> None:
    await conn.execute(
        """UPDATE certificates SET status = 'failed', failure_reason = $2
           WHERE id = $1 AND status = 'pending'""",
        cert_id, reason[:500],
    )


async def fail_stale_pending(conn: asyncpg.Connection, *, created_before: datetime) -> int:
    """Pending rows whose gateway died mid-application: they never got a certificate."""
    rows = await conn.fetch(
        """UPDATE certificates SET status = 'failed', failure_reason = 'abandoned while pending'
           WHERE status = 'pending' AND created_at < $1 RETURNING id""",
        created_before,
    )
    return len(rows)


async def blocking_certificate(
    conn: asyncpg.Connection, *, subscriber_id: int, usage: str, now: datetime,
    pending_since: datetime, exclude_id: int | None = None,
) -> int | None:
    """A certificate of this usage that is not revoked, superseded or expired (or an
    application of it still in flight), other than ``exclude_id``; None when there is none."""
    return await conn.fetchval(
        """SELECT c.id FROM certificates c
           LEFT JOIN revocations r ON r.certificate_id = c.id
           WHERE c.subscriber_id = $1 AND c.usage = $2
             AND ($5::bigint IS NULL OR c.id <> $5)
             AND ((c.status = 'issued' AND r.certificate_id IS NULL
                   AND c.superseded_by IS NULL AND c.not_after > $3)
                  OR (c.status = 'pending' AND c.created_at >= $4))
           LIMIT 1""",
        subscriber_id, usage, now, pending_since, exclude_id,
    )


async def mark_downloaded(conn: asyncpg.Connection, cert_id: int, now: datetime) -> bool:
    """True the first time."""
    done = await conn.fetchval(
        """UPDATE certificates SET downloaded_at = $2
           WHERE id = $1 AND status = 'issued' AND downloaded_at IS NULL RETURNING id""",
        cert_id, now,
    )
    return done is not None


async def link_renewal(conn: asyncpg.Connection, *, old_id: int, new_id: int) -> bool:
    """The old certificate becomes superseded by the new one; False if it already was."""
    done = await conn.fetchval(
        """UPDATE certificates SET superseded_by = $2
           WHERE id = $1 AND superseded_by IS NULL RETURNING id""",
        old_id, new_id,
    )
    if done is None:
        return False
    await conn.execute("UPDATE certificates SET renewed_from = $1 WHERE id = $2", old_id, new_id)
    return True


@dataclass(frozen=True)
class SerialStatus:
    status: str  # good, revoked
    revoked_at: datetime | None
    reason: str | None


async def serial_status(
    conn: asyncpg.Connection, *, issuer_id: int, serial: str
) -> SerialStatus | None:
    """OCSP view of one serial of one issuer; None for a serial this CA never issued."""
    r = await conn.fetchrow(
        """SELECT r.revoked_at, r.reason FROM certificates c
           LEFT JOIN revocations r ON r.certificate_id = c.id
           WHERE c.serial = $1 AND c.issuer_id = $2 AND c.status = 'issued'""",
        serial, issuer_id,
    )
    if r is None:
        return None
    if r["revoked_at"] is not None:
        return SerialStatus("revoked", r["revoked_at"], r["reason"])
    return SerialStatus("good", None, None)
