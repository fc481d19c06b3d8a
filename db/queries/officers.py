"""RA officers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.queries import lockout


@dataclass(frozen=True)
class Officer:
    id: int
    login: str
    password_hash: str
    failed_attempts: int
    locked_at: datetime | None
    can_unlock: bool = False  # may unlock other officers (migration 010)

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


def _officer(r: asyncpg.Record) -> Officer:
    return Officer(
        r["id"],
        r["login"],
        r["password_hash"],
        r["failed_attempts"],
        r["locked_at"],
        bool(r["can_unlock"]),
    )


async def insert(
    conn: asyncpg.Connection, login: str, password_hash: str, *, can_unlock: bool = False
) -> int:
    # a login that failed before it existed starts clean
    await lockout.forget_unknown(conn, "unknown_officer_failures", login)
    return await conn.fetchval(
        """INSERT INTO ra_officers (login, password_hash, can_unlock) VALUES ($1, $2, $3)
           RETURNING id""",
        login,
        password_hash,
        can_unlock,
    )


async def all_officers(conn: asyncpg.Connection | asyncpg.Pool) -> list[Officer]:
    return [_officer(r) for r in await conn.fetch("SELECT * FROM ra_officers ORDER BY login")]


async def set_can_unlock(conn: asyncpg.Connection, login: str, allowed: bool) -> bool:
    """Give or take the right to unlock other officers (ca-admin only). False: no officer."""
    status = await conn.execute(
        "UPDATE ra_officers SET can_unlock = $2 WHERE login = $1", login, allowed
    )
    return status.endswith(" 1")


async def by_login(
    conn: asyncpg.Connection, login: str, *, for_update: bool = False
) -> Officer | None:
    lock = " FOR UPDATE" if for_update else ""
    r = await conn.fetchrow(f"SELECT * FROM ra_officers WHERE login = $1{lock}", login)  # noqa: S608 - constant column lists and lock clause only
    return _officer(r) if r else None


async def by_id(conn: asyncpg.Connection, officer_id: int) -> Officer | None:
    r = await conn.fetchrow("SELECT * FROM ra_officers WHERE id = $1", officer_id)
    return _officer(r) if r else None


async def record_failure(
    conn: asyncpg.Connection, officer_id: int, *, lock_at: int, now: datetime
) -> lockout.Failure:
    """Count a failed login (atomically); lock at ``lock_at`` failures."""
    return await lockout.record_failure(conn, "ra_officers", officer_id, lock_at=lock_at, now=now)


async def record_success(conn: asyncpg.Connection, officer_id: int, *, password_hash: str) -> bool:
    """Reset the count, unless the officer was locked or the password changed meanwhile."""
    return await lockout.record_success(
        conn, "ra_officers", officer_id, password_hash=password_hash
    )


async def record_unknown_failure(conn: asyncpg.Connection, login: str, *, now: datetime) -> int:
    """Failures of a login that does not exist: it locks like a real one (same answers)."""
    return await lockout.record_unknown_failure(conn, "unknown_officer_failures", login, now=now)


async def unlock(conn: asyncpg.Connection, login: str) -> bool:
    status = await conn.execute(
        "UPDATE ra_officers SET failed_attempts = 0, locked_at = NULL WHERE login = $1", login
    )
    return status.endswith(" 1")
