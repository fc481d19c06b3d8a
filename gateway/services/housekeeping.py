"""What the gateway's housekeeping task deletes on a schedule, so that no table an anonymous
client can write to grows without bound: expired and surplus captchas, old and surplus
failure counters of names that do not exist, rate-limit buckets that have refilled.

Every gateway runs it (``[gateway] housekeeping_seconds``); the statements are idempotent, so
several at once only repeat each other. The clock is passed in, so tests run it at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from db.queries import captcha as captcha_q
from db.queries import lockout
from db.queries import ratelimit as ratelimit_q
from gateway.config import GatewayConfig


@dataclass(frozen=True)
class Bounds:
    captcha_max_rows: int
    unknown_retention: timedelta
    unknown_max_rows: int

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Bounds:
        return cls(
            captcha_max_rows=config.captcha_max_rows,
            unknown_retention=timedelta(hours=config.unknown_login_retention_hours),
            unknown_max_rows=config.unknown_login_max_rows,
        )


@dataclass(frozen=True)
class Purged:
    captchas: int
    unknown_logins: int
    unknown_officers: int
    buckets: int


async def purge(pool: asyncpg.Pool, now: datetime, bounds: Bounds) -> Purged:
    captchas = await captcha_q.delete_expired(pool, now)  # type: ignore[arg-type]
    captchas += await captcha_q.trim(pool, keep=bounds.captcha_max_rows)
    cutoff = now - bounds.unknown_retention
    unknown = {
        table: await lockout.purge_unknown(
            pool, table, failed_before=cutoff, keep=bounds.unknown_max_rows
        )
        for table in ("unknown_login_failures", "unknown_officer_failures")
    }
    buckets = await ratelimit_q.purge_full(pool, now=now)
    return Purged(
        captchas, unknown["unknown_login_failures"], unknown["unknown_officer_failures"], buckets
    )
