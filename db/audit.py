"""The append-only audit log, hash-chained so that an edited or removed row shows.

Each row's ``hash`` is SHA-256 over the canonical JSON of the row (id, at, actor, action,
target, details; sorted keys, no whitespace, UTF-8) followed by the previous row's hash; the
first row's ``prev_hash`` is 32 zero bytes. Appends serialise on a transaction-scoped advisory
lock, so the chain never forks however many gateways write; ids are consecutive, so a deleted
row breaks the chain too. A trigger refuses UPDATE, DELETE and TRUNCATE.

``append`` runs inside the caller's transaction (the event commits with the action it
records) and must be the last statement of that transaction, so that the lock is held briefly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

GENESIS = bytes(32)
LOCK_KEY = 0x4341415544  # "CAAUD": the append lock (advisory, transaction-scoped)
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    problem: str = ""


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_parts(
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
) -> tuple[bytes, bytes]:
    """The row's canonical JSON around its id: ``head + str(id) + tail``. The keys sort as
    action, actor, at, details, id, target, so the id is the only part not known before the
    append lock is held; ``certificates_issue_batch`` (migration 005) completes the hash in
    the database with these parts."""
    head = orjson.dumps(
        {"action": action, "actor": actor, "at": _timestamp(at), "details": details},
        option=orjson.OPT_SORT_KEYS,
    )
    return head[:-1] + b',"id":', b',"target":' + orjson.dumps(target) + b"}"


def _normalise(at: datetime, details: Mapping[str, Any] | None) -> tuple[datetime, dict[str, Any]]:
    """The time in UTC (microseconds are what PostgreSQL keeps) and the details as they come
    back from JSON: what is stored and what the hash covers, canonicalised once."""
    return at.astimezone(UTC), orjson.loads(orjson.dumps(dict(details or {})))


def row_hash(
    *,
    id: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    prev_hash: bytes,
) -> bytes:
    head, tail = canonical_parts(at=at, actor=actor, action=action, target=target, details=details)
    return hashlib.sha256(head + str(id).encode() + tail + prev_hash).digest()


async def append(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event; the caller's transaction must be open."""
    if not conn.is_in_transaction():
        raise RuntimeError("audit.append needs an open transaction")
    at, clean = _normalise(at or datetime.now(UTC), details)
    last = await _lock_head(conn)
    new_id = 1 if last is None else last["id"] + 1
    prev = GENESIS if last is None else bytes(last["hash"])
    digest = row_hash(
        id=new_id,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=clean,
        prev_hash=prev,
    )
    await conn.execute(
        """INSERT INTO audit_events (id, at, actor, action, target, details, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        new_id,
        at,
        actor,
        action,
        target,
        clean,
        prev,
        digest,
    )
    return AuditEvent(new_id, at, actor, action, target, clean, prev, digest)


async def _lock_head(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """Take the append lock (transaction-scoped), then read the chain head: one round trip
    (``audit_lock_head``, migration 004). None for an empty chain."""
    row = await conn.fetchrow(
        "SELECT head_id AS id, head_hash AS hash FROM audit_lock_head($1)", LOCK_KEY
    )
    return None if row is None or row["id"] is None else row


@dataclass(frozen=True)
class NewEvent:
    """An event for ``db.queries.certificates.issue_batch`` (which appends in the database)."""

    actor: str
    action: str
    target: str = ""
    details: Mapping[str, Any] | None = None
    at: datetime | None = None

    def prepared(self, now: datetime) -> tuple[datetime, dict[str, Any], bytes, bytes]:
        """(at, details, head, tail) as ``append`` would store and hash them, ``now`` for an
        event without a time; the database completes the hash with the row id."""
        at, details = _normalise(self.at or now, self.details)
        head, tail = canonical_parts(
            at=at, actor=self.actor, action=self.action, target=self.target, details=details
        )
        return at, details, head, tail


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        details=row["details"],
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
    )


async def list_events(conn: asyncpg.Connection, *, after_id: int, limit: int) -> list[AuditEvent]:
    rows = await conn.fetch(
        "SELECT * FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )
    return [_event(r) for r in rows]


async def list_events_newest_first(
    conn: asyncpg.Connection, *, before_id: int, limit: int
) -> list[AuditEvent]:
    """The ``limit`` events before ``before_id`` (0: from the newest), newest first: what a
    person reviewing the log reads first."""
    rows = await conn.fetch(
        "SELECT * FROM audit_events WHERE $1 = 0 OR id < $1 ORDER BY id DESC LIMIT $2",
        before_id,
        limit,
    )
    return [_event(r) for r in rows]


async def verify(conn: asyncpg.Connection, *, batch: int = 5000) -> VerifyResult:
    """Walk the whole chain in id order; report the first row that does not fit."""
    prev = GENESIS
    expected_id = 1
    checked = 0
    after = 0
    while True:
        events = await list_events(conn, after_id=after, limit=batch)
        if not events:
            return VerifyResult(ok=True, checked=checked)
        for ev in events:
            if ev.id != expected_id:
                return VerifyResult(False, checked, ev.id, f"row(s) missing before id {ev.id}")
            if ev.prev_hash != prev:
                return VerifyResult(False, checked, ev.id, "prev_hash does not match previous row")
            digest = row_hash(
                id=ev.id,
                at=ev.at,
                actor=ev.actor,
                action=ev.action,
                target=ev.target,
                details=ev.details,
                prev_hash=ev.prev_hash,
            )
            if digest != ev.hash:
                return VerifyResult(False, checked, ev.id, "row content does not match its hash")
            prev = ev.hash
            expected_id += 1
            checked += 1
        after = events[-1].id
