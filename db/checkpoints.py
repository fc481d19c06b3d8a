"""Audit checkpoints in the database: read the chain's head, store a signed checkpoint, and
check every checkpoint against the log as it is now.

The hash chain alone shows an edited or removed row only while the later hashes are left alone:
someone with the owner's or a superuser's rights can delete the newest rows, or edit a row and
recompute every hash after it, and the chain verifies again. A checkpoint signed by the
signer's audit key (``signer/checkpoints.py``) pins (last id, its hash, row count) at a time:
after such a change the checkpointed id is gone, has another hash, or the count differs.
Checkpoints are also appended to the signer's own file, so deleting them from this table (which
only an owner could, with its trigger disabled) does not hide anything from ``verify``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from db.audit import GENESIS
from signer.checkpoints import PublicKey, SignedCheckpoint, key_fingerprint, verify_checkpoint
from signer.protocol import CheckpointRequest


async def head(conn: asyncpg.Connection, at: datetime) -> CheckpointRequest:
    """The chain's head as one statement sees it (one snapshot: id, hash and count agree)."""
    row = await conn.fetchrow(
        """SELECT e.id, e.hash, (SELECT count(*) FROM audit_events) AS n
           FROM audit_events e ORDER BY e.id DESC LIMIT 1"""
    )
    stamp = int(at.timestamp())
    if row is None:
        return CheckpointRequest(0, GENESIS, 0, stamp)
    return CheckpointRequest(row["id"], bytes(row["hash"]), row["n"], stamp)


async def store(conn: asyncpg.Connection, signed: SignedCheckpoint) -> None:
    r = signed.request
    await conn.execute(
        """INSERT INTO audit_checkpoints
               (last_id, last_hash, event_count, signed_at, key_fingerprint, signature)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        r.last_id,
        r.last_hash,
        r.count,
        datetime.fromtimestamp(r.at, UTC),
        signed.fingerprint.hex(),
        signed.signature,
    )


async def stored(conn: asyncpg.Connection) -> list[SignedCheckpoint]:
    rows = await conn.fetch("SELECT * FROM audit_checkpoints ORDER BY id")
    return [
        SignedCheckpoint(
            CheckpointRequest(
                r["last_id"],
                bytes(r["last_hash"]),
                r["event_count"],
                int(r["signed_at"].timestamp()),
            ),
            bytes.fromhex(r["key_fingerprint"]),
            bytes(r["signature"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class CheckpointFailure:
    source: str  # "database checkpoint 3" / "file checkpoint 7 (path)"
    last_id: int
    problem: str


async def _head_facts(
    conn: asyncpg.Connection, ids: list[int]
) -> tuple[dict[int, bytes], dict[int, int]]:
    """For sorted, distinct checkpointed ids: each one's hash now, and how many rows have an
    id up to it, in two statements (one pass over the log, however many checkpoints)."""
    if not ids:
        return {}, {}
    rows = await conn.fetch("SELECT id, hash FROM audit_events WHERE id = ANY($1)", ids)
    hashes = {r["id"]: bytes(r["hash"]) for r in rows}
    # bucket j holds the ids in (ids[j-1], ids[j]]; the running sum is the count up to ids[j]
    buckets = await conn.fetch(
        """SELECT width_bucket(id, $1::bigint[]) AS b, count(*) AS n FROM audit_events
           WHERE id <= $2 GROUP BY 1""",
        [i + 1 for i in ids],
        ids[-1],
    )
    per_bucket = {r["b"]: r["n"] for r in buckets}
    counts: dict[int, int] = {}
    running = 0
    for j, last_id in enumerate(ids):
        running += per_bucket.get(j, 0)
        counts[last_id] = running
    return hashes, counts


async def check(
    conn: asyncpg.Connection, key: PublicKey, checkpoints: Iterable[tuple[str, SignedCheckpoint]]
) -> tuple[int, list[CheckpointFailure]]:
    """Each checkpoint: signed by ``key``, its id still has its hash, and as many rows up to
    that id as it counted. Returns (checked, failures)."""
    fingerprint = key_fingerprint(key)
    failures: list[CheckpointFailure] = []
    signed: list[tuple[str, SignedCheckpoint]] = []
    todo = list(checkpoints)
    for source, cp in todo:
        r = cp.request
        if cp.fingerprint != fingerprint:
            failures.append(
                CheckpointFailure(source, r.last_id, "signed by another key than the audit key")
            )
        elif not verify_checkpoint(key, r, cp.signature):
            failures.append(
                CheckpointFailure(
                    source, r.last_id, "signature does not verify (forged or altered checkpoint)"
                )
            )
        else:
            signed.append((source, cp))
    ids = sorted({cp.request.last_id for _, cp in signed if cp.request.last_id > 0})
    hashes, counts = await _head_facts(conn, ids)
    for source, cp in signed:
        r = cp.request
        if r.last_id == 0:
            continue  # the empty log: nothing to compare
        if r.last_id not in hashes:
            problem = f"event {r.last_id} is gone (rows removed from the end of the log)"
        elif hashes[r.last_id] != r.last_hash:
            problem = f"event {r.last_id} has another hash (the chain was recomputed)"
        elif counts[r.last_id] != r.count:
            problem = (
                f"{counts[r.last_id]} events up to id {r.last_id}, the checkpoint counted {r.count}"
            )
        else:
            continue
        failures.append(CheckpointFailure(source, r.last_id, problem))
    order = {source: i for i, (source, _) in enumerate(todo)}
    failures.sort(key=lambda f: order[f.source])
    return len(todo), failures
