"""Tables an anonymous client writes to stay bounded under a flood: captchas, failure counters
of unknown subscriber and officer names, rate-limit buckets. The scheduled purge (every
second here) trims them to their caps; with the injected clock past the captcha TTL, the
retention of unknown names and the refill of the buckets, they empty. The captcha endpoint's
own limit trips, refills and switches off; without a trusted proxy, X-Forwarded-For is
ignored (the default)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from db.queries import captcha as captcha_q
from db.queries import lockout
from db.queries import ratelimit as ratelimit_q
from gateway import appkeys, captcha
from gateway.config import GatewayConfig, RateLimits
from gateway.services import housekeeping
from tests.integration.conftest import Client, FakeClock

pytestmark = pytest.mark.asyncio(loop_scope="module")
CAPTCHA_CAP = 40
UNKNOWN_CAP = 15
GATEWAY_OVERRIDES = {
    "captcha": True,
    "captcha_ttl": 180,
    "captcha_max_rows": CAPTCHA_CAP,
    "unknown_login_max_rows": UNKNOWN_CAP,
    "unknown_login_retention_hours": 1,
    "housekeeping_seconds": 1,
}
ANSWER = "K7XRT"


async def _wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Polls (the purge runs on its schedule, every second here); fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "the scheduled purge did not bound the table"
        await asyncio.sleep(0.2)


async def _captcha(c: Client) -> str:
    r = await c.call("GET", "/api/v1/captcha")
    assert r.status == 200, r.text
    return r.json["captcha_id"]


async def test_captcha_flood_stays_bounded(
    new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock
) -> None:
    c = new_client()
    made = 0
    for _ in range(4):
        got = await asyncio.gather(*(c.call("GET", "/api/v1/captcha") for _ in range(25)))
        assert {r.status for r in got} == {200}
        made += len(got)
    assert made > CAPTCHA_CAP
    await _wait_until(lambda: _le(captcha_q.count(db_pool), CAPTCHA_CAP))
    clock.advance(181)  # past the TTL: every one is expired
    await _wait_until(lambda: _le(captcha_q.count(db_pool), 0))


async def _le(n: Awaitable[int], bound: int) -> bool:
    return await n <= bound


async def test_unknown_name_floods_stay_bounded(
    new_client: Any,
    db_pool: asyncpg.Pool,
    clock: FakeClock,
    server: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(captcha, "new_answer", lambda: ANSWER)
    c = new_client()

    async def subscriber_guess() -> int:
        body = {
            "account": "zz" + secrets.token_hex(5),
            "password": "guess",
            "captcha_id": await _captcha(c),
            "captcha_answer": ANSWER,
        }
        return (await c.call("POST", "/api/v1/session", body)).status

    async def officer_guess() -> int:
        body = {"login": "ra-" + secrets.token_hex(5), "password": "guess"}
        return (await c.call("POST", "/api/v1/ra/session", body)).status

    for guess in (subscriber_guess, officer_guess):
        statuses: list[int] = []
        for _ in range(3):
            statuses += await asyncio.gather(*(guess() for _ in range(8)))
        assert statuses.count(401) > UNKNOWN_CAP, statuses  # each a new counter row
    for table in ("unknown_login_failures", "unknown_officer_failures"):
        await _wait_until(lambda t=table: _le(lockout.count_unknown(db_pool, t), UNKNOWN_CAP))

    # the purge itself, run with the injected clock past the retention of unknown names
    config: GatewayConfig = server.app[appkeys.CONFIG]
    clock.advance(3600 + 1)
    await housekeeping.purge(db_pool, clock(), housekeeping.Bounds.from_config(config))
    for table in ("unknown_login_failures", "unknown_officer_failures"):
        assert await lockout.count_unknown(db_pool, table) == 0


async def test_captcha_rate_limit_and_buckets_purged(
    new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock, server: TestServer
) -> None:
    """captcha_per_address trips at its value from one peer whatever X-Forwarded-For says
    (no trusted proxy configured), refills, and 0 switches it off; buckets of a flood of
    distinct accounts are gone once they have refilled."""
    limiter = server.app[appkeys.RATELIMITS]
    base = msgspec.structs.replace(RateLimits.off(), window_seconds=60)
    try:
        limiter.limits = msgspec.structs.replace(base, captcha_per_address=3)
        c = new_client()

        async def get() -> Any:
            hdrs = {"X-Forwarded-For": f"203.0.113.{secrets.randbelow(250) + 1}"}
            return await c.call("GET", "/api/v1/captcha", headers=hdrs)

        assert [(await get()).status for _ in range(4)] == [200, 200, 200, 429]
        r = await get()
        assert (r.status, r.json["error"], r.headers["Retry-After"]) == (429, "rate_limited", "20")
        clock.advance(20)
        assert [(await get()).status for _ in range(2)] == [200, 429]
        limiter.limits = base  # 0: off
        assert [(await get()).status for _ in range(5)] == [200] * 5

        # a flood of distinct account names leaves one bucket each; all refill in a window
        limiter.limits = msgspec.structs.replace(base, login_per_account=2)
        for _ in range(3):
            await asyncio.gather(
                *(
                    c.call(
                        "POST",
                        "/api/v1/session",
                        {
                            "account": "zz" + secrets.token_hex(5),
                            "password": "x",
                            "captcha_id": "",
                            "captcha_answer": "",
                        },
                    )
                    for _ in range(20)
                )
            )
        assert await ratelimit_q.count(db_pool) >= 60
        clock.advance(60)
        await _wait_until(lambda: _le(ratelimit_q.count(db_pool), 0))
    finally:
        limiter.limits = RateLimits.off()
