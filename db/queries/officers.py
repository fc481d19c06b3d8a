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

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


def _officer(r: asyncpg.Record) -> Officer:
    return Officer(r["id"], r["login"], r["password_hash"], r["failed_attempts"], r["locked_at"])


async def insert(conn: asyncpg.Connection, login: str, password_hash: str) -> int:
    return await conn.fetchval(
        "INSERT INTO ra_officers (login, password_hash) VALUES ($1, $2) RETURNING id",
        login, password_hash,
    )


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
) -> tuple[int, bool]:
    """Count a failed login; lock at ``lock_at`` failures. Returns (failures, locked_now)."""
    return await lockout.record_failure(conn, "ra_officers", officer_id, lock_at=lock_at, now=now)


async def record_success(conn: asyncpg.Connection, officer_id: int) -> None:
    await lockout.record_success(conn, "ra_officers", officer_id)


async def unlock(conn: asyncpg.Connection, login: str) -> bool:
    status = await conn.execute(
        "UPDATE ra_officers SET failed_attempts = 0, locked_at = NULL WHERE login = $1", login
    )
    return status.endswith(" 1")
