"""Server-side sessions, stored by the SHA-256 of their id (a database leak yields no cookie)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

Kind = Literal["subscriber", "officer"]


@dataclass(frozen=True)
class Session:
    id_hash: bytes
    kind: Kind
    account_id: int | None
    officer_id: int | None
    csrf_hash: bytes
    created_at: datetime
    last_seen_at: datetime


async def insert(
    conn: asyncpg.Connection, *, id_hash: bytes, kind: Kind, account_id: int | None,
    officer_id: int | None, csrf_hash: bytes, now: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (id_hash, kind, account_id, officer_id, csrf_hash, created_at,
               last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $6)""",
        id_hash, kind, account_id, officer_id, csrf_hash, now,
    )


async def get(conn: asyncpg.Connection, id_hash: bytes, kind: Kind) -> Session | None:
    r = await conn.fetchrow("SELECT * FROM sessions WHERE id_hash = $1 AND kind = $2",
                            id_hash, kind)
    if r is None:
        return None
    return Session(bytes(r["id_hash"]), r["kind"], r["account_id"], r["officer_id"],
                   bytes(r["csrf_hash"]), r["created_at"], r["last_seen_at"])


async def touch(conn: asyncpg.Connection, id_hash: bytes, now: datetime) -> None:
    await conn.execute("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1", id_hash, now)


async def delete(conn: asyncpg.Connection, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE id_hash = $1", id_hash)


async def delete_for_account(
    conn: asyncpg.Connection, account_id: int, *, except_hash: bytes | None = None
) -> int:
    status = await conn.execute(
        "DELETE FROM sessions WHERE account_id = $1 AND id_hash IS DISTINCT FROM $2",
        account_id, except_hash,
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
        idle_before, created_before,
    )
    return int(status.split()[-1])
