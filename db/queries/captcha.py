"""Captcha challenges: stored hashed, consumed (deleted) by the first check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Challenge:
    id: str
    answer_hash: bytes
    expires_at: datetime


async def insert(
    conn: asyncpg.Connection, *, id: str, answer_hash: bytes, now: datetime, expires_at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO captcha_challenges (id, answer_hash, created_at, expires_at)
           VALUES ($1, $2, $3, $4)""",
        id,
        answer_hash,
        now,
        expires_at,
    )


async def take(conn: asyncpg.Connection, id: str) -> Challenge | None:
    """Remove and return the challenge: whatever the answer, it is used up."""
    r = await conn.fetchrow(
        "DELETE FROM captcha_challenges WHERE id = $1 RETURNING id, answer_hash, expires_at", id
    )
    return Challenge(r["id"], bytes(r["answer_hash"]), r["expires_at"]) if r else None


async def delete_expired(conn: asyncpg.Connection, now: datetime) -> int:
    status = await conn.execute("DELETE FROM captcha_challenges WHERE expires_at < $1", now)
    return int(status.split()[-1])


async def trim(conn: asyncpg.Connection | asyncpg.Pool, *, keep: int) -> int:
    """Delete all but the ``keep`` newest challenges: the table stays bounded under a flood
    from many addresses (each address is rate limited; their number is not)."""
    status = await conn.execute(
        """DELETE FROM captcha_challenges WHERE id IN (
               SELECT id FROM captcha_challenges ORDER BY expires_at DESC, id OFFSET $1)""",
        keep,
    )
    return int(status.split()[-1])


async def count(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT count(*) FROM captcha_challenges")
