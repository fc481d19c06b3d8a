"""Token buckets in PostgreSQL, shared by every gateway (``rate_limit_buckets``).

One statement takes a token from each bucket of an attempt: an upsert that computes the refill
since the bucket's last attempt, so two gateways (or two requests) taking from the same bucket
at once serialise on its row and neither can spend a token twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# a refill computed in floating point may land a hair below a whole token
_EPSILON = 1e-9


@dataclass(frozen=True)
class Take:
    """One bucket to take a token from."""

    key_hash: bytes  # SHA-256 of scope and value (see gateway.services.ratelimit)
    scope: str
    capacity: float  # tokens when full: the configured limit
    rate: float  # tokens per second


@dataclass(frozen=True)
class Level:
    key_hash: bytes
    scope: str
    tokens: float  # after this attempt
    denied: bool  # no whole token was left: the attempt must not go on
    rate: float

    @property
    def retry_after(self) -> float:
        """Seconds until a whole token is back (0 when this attempt got one)."""
        if not self.denied:
            return 0.0
        return max(0.0, (1.0 - self.tokens) / self.rate)


def _refilled(bucket: str, new: str) -> str:
    """The level of ``bucket`` refilled up to ``new``'s time, capped at the capacity."""
    return (
        f"LEAST({new}.capacity, {bucket}.tokens + {new}.rate * GREATEST(0, "
        f"EXTRACT(EPOCH FROM {new}.updated_at - {bucket}.updated_at)))"
    )


# ON CONFLICT ... DO UPDATE cannot name a sub-select, so the refill expression is spelled out
_REFILL = _refilled("b", "EXCLUDED")
_TAKE_SQL = f"""
INSERT INTO rate_limit_buckets AS b (key_hash, scope, capacity, rate, tokens, denied, updated_at)
SELECT k.key_hash, k.scope, k.capacity, k.rate, k.capacity - 1, false, $5
FROM unnest($1::bytea[], $2::text[], $3::float8[], $4::float8[])
    AS k(key_hash, scope, capacity, rate)
ON CONFLICT (key_hash) DO UPDATE SET
    tokens = CASE WHEN {_REFILL} >= 1 - {_EPSILON} THEN {_REFILL} - 1 ELSE {_REFILL} END,
    denied = {_REFILL} < 1 - {_EPSILON},
    capacity = EXCLUDED.capacity,
    rate = EXCLUDED.rate,
    updated_at = GREATEST(b.updated_at, EXCLUDED.updated_at)
RETURNING b.key_hash, b.scope, b.tokens, b.denied, b.rate
"""  # noqa: S608 - constant expressions only


async def take(
    conn: asyncpg.Connection | asyncpg.Pool, takes: list[Take], *, now: datetime
) -> list[Level]:
    """Take one token from each bucket (created full on first use); the levels after it.

    Every bucket is charged even when another one denies: an attempt refused for its account
    still costs its source address."""
    if not takes:
        return []
    rows = await conn.fetch(
        _TAKE_SQL,
        [t.key_hash for t in takes],
        [t.scope for t in takes],
        [float(t.capacity) for t in takes],
        [float(t.rate) for t in takes],
        now,
    )
    return [
        Level(bytes(r["key_hash"]), r["scope"], r["tokens"], r["denied"], r["rate"]) for r in rows
    ]


async def purge_full(conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime) -> int:
    """Delete the buckets that have refilled completely by ``now``: the same as no row."""
    status = await conn.execute(
        f"""DELETE FROM rate_limit_buckets b
            WHERE b.tokens + b.rate * GREATEST(0, EXTRACT(EPOCH FROM $1::timestamptz
                                                          - b.updated_at))
                  >= b.capacity - {_EPSILON}""",  # noqa: S608 - a numeric constant only
        now,
    )
    return int(status.split()[-1])


async def count(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT count(*) FROM rate_limit_buckets")
