"""Certificate rows: the pending → issued | failed life of an application, and lookups.

A row is written ``pending`` (committed) before the signer is asked; it becomes ``issued`` with
its DER in the same transaction as the audit event, or ``failed`` with a reason. Only issued
rows are ever shown to anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db import audit


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
    # not a column: True when this is the stored answer to an earlier attempt of the same
    # application (same subscriber, usage and key), returned to its retry
    replayed: bool = False


_COLS = """c.id, c.serial, c.usage, c.status, c.subject, i.subject AS issuer_subject,
    c.der, c.not_before, c.not_after, c.downloaded_at, c.superseded_by,
    r.revoked_at, r.reason AS revocation_reason, c.subscriber_id, c.issuer_id,
    i.name AS issuer_name, c.public_key_sha256, c.renewed_from"""
_FROM = """FROM certificates c
    JOIN issuers i ON i.id = c.issuer_id
    LEFT JOIN revocations r ON r.certificate_id = c.id"""


def _row(r: asyncpg.Record) -> CertificateRow:
    return CertificateRow(
        id=r["id"],
        serial=r["serial"],
        usage=r["usage"],
        status=r["status"],
        subject=r["subject"],
        issuer_subject=r["issuer_subject"],
        der=bytes(r["der"]) if r["der"] is not None else None,
        not_before=r["not_before"],
        not_after=r["not_after"],
        downloaded_at=r["downloaded_at"],
        superseded_by=r["superseded_by"],
        revoked_at=r["revoked_at"],
        revocation_reason=r["revocation_reason"],
        subscriber_id=r["subscriber_id"],
        issuer_id=r["issuer_id"],
        issuer_name=r["issuer_name"],
        public_key_sha256=bytes(r["public_key_sha256"]),
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
    conn: asyncpg.Connection,
    cert_id: int,
    *,
    subscriber_id: int | None = None,
    for_update: bool = False,
) -> CertificateRow | None:
    """One issued certificate; with ``subscriber_id``, only if it is that subscriber's."""
    lock = " FOR UPDATE OF c" if for_update else ""
    r = await conn.fetchrow(
        f"""SELECT {_COLS} {_FROM}
            WHERE c.id = $1 AND c.status = 'issued'
              AND ($2::bigint IS NULL OR c.subscriber_id = $2){lock}""",
        cert_id,
        subscriber_id,
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


@dataclass(frozen=True)
class Intent:
    """One application's pending row, for ``apply_batch``."""

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


async def apply_batch(conn: asyncpg.Connection, intents: list[Intent]) -> dict[str, int]:
    """For each intent that nothing blocks (a certificate of that usage not revoked, superseded
    or expired, or an application still in flight; of several intents for one subscriber and
    usage only the first): record the terms acceptance and write the pending row. One round
    trip and one transaction (the ``certificates_apply_batch`` function, migration 004: it locks
    the subscribers in id order first); call it outside a transaction, the pending rows are
    committed when it returns. Returns {serial: id} of the rows written."""
    rows = await conn.fetch(
        "SELECT cert_id, cert_serial FROM certificates_apply_batch($1::bigint[], $2::bigint[],"
        " $3::text[], $4::bigint[], $5::text[], $6::int[], $7::text[], $8::text[], $9::bytea[],"
        " $10::timestamptz[], $11::timestamptz[], $12::text[], $13::timestamptz[],"
        " $14::timestamptz[])",
        [i.subscriber_id for i in intents],
        [i.account_id for i in intents],
        [i.usage for i in intents],
        [i.exclude_id for i in intents],
        [i.serial for i in intents],
        [i.issuer_id for i in intents],
        [i.profile for i in intents],
        [i.subject for i in intents],
        [i.public_key_sha256 for i in intents],
        [i.not_before for i in intents],
        [i.not_after for i in intents],
        [i.terms_version for i in intents],
        [i.now for i in intents],
        [i.pending_since for i in intents],
    )
    return {r[1]: r[0] for r in rows}


async def ids_by_serial(conn: asyncpg.Connection, serials: list[str]) -> dict[str, int]:
    """{serial: id} of the rows with these serials: which pending rows of a batch whose commit
    outcome is unknown were written."""
    rows = await conn.fetch(
        "SELECT serial, id FROM certificates WHERE serial = ANY($1::text[])", serials
    )
    return {r["serial"]: r["id"] for r in rows}


@dataclass(frozen=True)
class Blocker:
    """What stopped an application: the newest row of its subscriber and usage that is a valid
    issued certificate or an application still in flight."""

    id: int
    status: str  # issued, pending
    public_key_sha256: bytes


async def blockers(conn: asyncpg.Connection, intents: list[Intent]) -> list[Blocker | None]:
    """Per intent (in order), the row that blocks it under ``apply_batch``'s rule, if any."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (u.ord) u.ord, c.id, c.status, c.public_key_sha256
           FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[],
                       $5::timestamptz[]) WITH ORDINALITY AS u(sid, usage, excl, now, since, ord)
           JOIN certificates c ON c.subscriber_id = u.sid AND c.usage = u.usage
                AND (u.excl IS NULL OR c.id <> u.excl)
           LEFT JOIN revocations r ON r.certificate_id = c.id
           WHERE (c.status = 'issued' AND r.certificate_id IS NULL
                  AND c.superseded_by IS NULL AND c.not_after > u.now)
              OR (c.status = 'pending' AND c.created_at >= u.since)
           ORDER BY u.ord, c.id DESC""",
        [i.subscriber_id for i in intents],
        [i.usage for i in intents],
        [i.exclude_id for i in intents],
        [i.now for i in intents],
        [i.pending_since for i in intents],
    )
    by_ord = {r["ord"]: Blocker(r["id"], r["status"], bytes(r["public_key_sha256"])) for r in rows}
    return [by_ord.get(k) for k in range(1, len(intents) + 1)]


async def issued_by_ids(conn: asyncpg.Connection, ids: list[int]) -> dict[int, CertificateRow]:
    """The issued rows among ``ids``, by id."""
    rows = await conn.fetch(
        f"""SELECT {_COLS} {_FROM} WHERE c.id = ANY($1::bigint[]) AND c.status = 'issued'""",
        ids,
    )
    return {r["id"]: _row(r) for r in rows}


@dataclass(frozen=True)
class Issued:
    """One signed certificate for ``issue_batch``: its pending row's id, what the certificate
    says, and the audit event that records it."""

    id: int
    der: bytes
    subject: str
    not_before: datetime
    not_after: datetime
    event: audit.NewEvent


async def issue_batch(
    conn: asyncpg.Connection, items: list[Issued], now: datetime
) -> list[CertificateRow]:
    """Pending rows become issued and each gets its audit event, in one round trip and one
    transaction (``certificates_issue_batch``, migration 005); returns the rows that were still
    pending (an abandoned one was swept meanwhile, and is not audited), as stored."""
    items = sorted(items, key=lambda i: i.id)  # row locks in id order
    events = [i.event.prepared(now) for i in items]
    rows = await conn.fetch(
        "SELECT * FROM certificates_issue_batch($1::bigint[], $2::bytea[], $3::text[],"
        " $4::timestamptz[], $5::timestamptz[], $6, $7, $8::timestamptz[], $9::text[],"
        " $10::text[], $11::text[], $12::jsonb[], $13::bytea[], $14::bytea[])",
        [i.id for i in items],
        [i.der for i in items],
        [i.subject for i in items],
        [i.not_before for i in items],
        [i.not_after for i in items],
        now,
        audit.LOCK_KEY,
        [e[0] for e in events],
        [i.event.actor for i in items],
        [i.event.action for i in items],
        [i.event.target for i in items],
        [e[1] for e in events],
        [e[2] for e in events],
        [e[3] for e in events],
    )
    return [_row(r) for r in rows]


async def mark_issued(
    conn: asyncpg.Connection,
    cert_id: int,
    *,
    der: bytes,
    subject: str,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
) -> bool:
    done = await conn.fetchval(
        """UPDATE certificates SET status = 'issued', der = $2, subject = $3,
               not_before = $4, not_after = $5, issued_at = $6
           WHERE id = $1 AND status = 'pending' RETURNING id""",
        cert_id,
        der,
        subject,
        not_before,
        not_after,
        now,
    )
    return done is not None


async def mark_failed(conn: asyncpg.Connection, cert_id: int, reason: str) -> None:
    await conn.execute(
        """UPDATE certificates SET status = 'failed', failure_reason = $2
           WHERE id = $1 AND status = 'pending'""",
        cert_id,
        reason[:500],
    )


async def fail_stale_pending(conn: asyncpg.Connection, *, created_before: datetime) -> int:
    """Pending rows past their signing deadline: their gateway died or gave up, so nobody holds
    a certificate for them (a certificate is only handed out after its row is issued, and
    ``issue_batch`` only issues rows that are still pending, so the two cannot both win)."""
    rows = await conn.fetch(
        """UPDATE certificates SET status = 'failed',
               failure_reason = 'signing deadline passed while pending'
           WHERE status = 'pending' AND created_at < $1 RETURNING id""",
        created_before,
    )
    return len(rows)


async def mark_downloaded(conn: asyncpg.Connection, cert_id: int, now: datetime) -> bool:
    """True the first time."""
    done = await conn.fetchval(
        """UPDATE certificates SET downloaded_at = $2
           WHERE id = $1 AND status = 'issued' AND downloaded_at IS NULL RETURNING id""",
        cert_id,
        now,
    )
    return done is not None


async def link_renewal(conn: asyncpg.Connection, *, old_id: int, new_id: int) -> bool:
    """The old certificate becomes superseded by the new one; False if it already was."""
    done = await conn.fetchval(
        """UPDATE certificates SET superseded_by = $2
           WHERE id = $1 AND superseded_by IS NULL RETURNING id""",
        old_id,
        new_id,
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
        serial,
        issuer_id,
    )
    if r is None:
        return None
    if r["revoked_at"] is not None:
        return SerialStatus("revoked", r["revoked_at"], r["reason"])
    return SerialStatus("good", None, None)
