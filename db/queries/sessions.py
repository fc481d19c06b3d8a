"""Server-side sessions, stored by the SHA-256 of their id (a database leak yields no cookie)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import asyncpg

Kind = Literal["subscriber", "officer"]


async def insert(
    conn: asyncpg.Connection,
    *,
    id_hash: bytes,
    kind: Kind,
    account_id: int | None,
    officer_id: int | None,
    csrf_hash: bytes,
    now: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (id_hash, kind, account_id, officer_id, csrf_hash, created_at,
               last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $6)""",
        id_hash,
        kind,
        account_id,
        officer_id,
        csrf_hash,
        now,
    )


# One round trip for the authenticated requests in flight (``gateway.services.accounts``
# batches them): each session (expired ones are deleted by the same statement), its account and
# subscriber (or officer), and ``last_seen_at`` touched only when it is older than the touch
# interval, so that a busy session is not one write per request. The delete and the touch take
# their row locks with SKIP LOCKED: two batches (or a logout) holding the same sessions in
# another order never deadlock, and a skipped touch or purge is done by whoever holds the row
# (or by the next request, or housekeeping). Data-modifying CTEs run whether or not they are
# referenced; all parts see one snapshot.
_AUTH = """
WITH req AS (
    SELECT DISTINCT r.id_hash, r.kind FROM unnest($1::bytea[], $2::text[]) AS r(id_hash, kind)
), s AS (
    SELECT se.id_hash, se.kind, se.account_id, se.officer_id, se.csrf_hash, se.created_at,
           se.last_seen_at, se.officer_factor,
           (se.last_seen_at >= $3::timestamptz - $4::interval
            AND se.created_at >= $3::timestamptz - $5::interval) AS live
    FROM req JOIN sessions se ON se.id_hash = req.id_hash AND se.kind = req.kind
), due AS (
    SELECT x.id_hash, s.live FROM sessions x JOIN s ON x.id_hash = s.id_hash
    WHERE NOT s.live OR s.last_seen_at < $3::timestamptz - $6::interval
    FOR UPDATE OF x SKIP LOCKED
), gone AS (
    DELETE FROM sessions d USING due WHERE d.id_hash = due.id_hash AND NOT due.live
    RETURNING d.id_hash
), touched AS (
    UPDATE sessions t SET last_seen_at = $3 FROM due
    WHERE t.id_hash = due.id_hash AND due.live
    RETURNING t.id_hash
)
SELECT s.*,
    a.id AS a_id, a.subscriber_id, a.account, a.password_hash, a.must_change_password,
    a.failed_attempts, a.locked_at,
    sub.id AS s_id, sub.id_number, sub.name, sub.email, sub.phone, sub.address,
    sub.subject_cn, sub.subject_ou, sub.subject_o, sub.subject_c, sub.usages,
    sub.created_at AS s_created_at,
    o.id AS o_id, o.login AS o_login, o.password_hash AS o_password_hash,
    o.failed_attempts AS o_failed_attempts, o.locked_at AS o_locked_at
FROM s
LEFT JOIN accounts a ON a.id = s.account_id
LEFT JOIN subscribers sub ON sub.id = a.subscriber_id
LEFT JOIN ra_officers o ON o.id = s.officer_id
"""


async def authenticate_many(
    conn: asyncpg.Connection,
    keys: list[tuple[bytes, Kind]],
    *,
    now: datetime,
    idle: timedelta,
    absolute: timedelta,
    touch_after: timedelta,
) -> dict[tuple[bytes, str], asyncpg.Record]:
    """Per (id hash, kind) found: the session row (column ``live``: inside both timeouts; a
    dead one is deleted) joined with its account + subscriber (``a_*``/``s_*`` columns as in
    ``db.queries.subscribers``) or its officer (``o_*``). Keys with no session are absent."""
    rows = await conn.fetch(
        _AUTH, [k[0] for k in keys], [k[1] for k in keys], now, idle, absolute, touch_after
    )
    return {(bytes(r["id_hash"]), r["kind"]): r for r in rows}


async def delete(conn: asyncpg.Connection, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE id_hash = $1", id_hash)


async def delete_for_account(
    conn: asyncpg.Connection, account_id: int, *, except_hash: bytes | None = None
) -> int:
    status = await conn.execute(
        "DELETE FROM sessions WHERE account_id = $1 AND id_hash IS DISTINCT FROM $2",
        account_id,
        except_hash,
    )
    return int(status.split()[-1])


async def delete_for_officer(conn: asyncpg.Connection, officer_id: int) -> int:
    status = await conn.execute("DELETE FROM sessions WHERE officer_id = $1", officer_id)
    return int(status.split()[-1])


async def delete_expired(
    conn: asyncpg.Connection, *, idle_before: datetime, created_before: datetime
) -> int:
    status = await conn.execute(
        "DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2",
        idle_before,
        created_before,
    )
    return int(status.split()[-1])
