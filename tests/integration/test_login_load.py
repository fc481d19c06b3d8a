"""Logins cannot exhaust the server: 100 concurrent wrong-password logins (subscriber and
officer, known and unknown names) for 20 s from another process, while a logged-in subscriber
lists its certificates every 100 ms. Argon2 runs in the bounded hashing executor with no
database connection held, so the subscriber's p99 stays under 1 s; logins beyond the queue
get 503 ``busy`` with Retry-After at once and nothing else answers 5xx.

Rate limits are off here (the conftest default): this is what the gateway does when they do
not stop a flood, e.g. one spread over many addresses.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from argon2 import PasswordHasher

from db.queries import officers
from tests.integration.conftest import Client, active_subscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")
GATEWAY_OVERRIDES = {"password_workers": 2, "password_queue": 16}
SECONDS = 20
CONCURRENCY = 100
REPO = Path(__file__).resolve().parents[2]


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def test_login_flood_does_not_stall_the_site(
    owner_pool: asyncpg.Pool, officer: Client, new_client: Any, base_url: str, db_pool: asyncpg.Pool
) -> None:
    user, _, _ = await active_subscriber(new_client, officer)
    _, target, _ = await active_subscriber(new_client, officer)
    async with owner_pool.acquire() as conn:
        await officers.insert(conn, "ra-flooded", PasswordHasher().hash("flooded-officer-pw"))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.login_flood",
        base_url,
        str(SECONDS),
        str(CONCURRENCY),
        target["account"],
        "ra-flooded",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        await asyncio.sleep(1.0)  # let the flood fill the queue first
        latencies: list[float] = []
        statuses: list[int] = []
        end = time.monotonic() + SECONDS - 2
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = await user.call("GET", "/api/v1/certificates")
            latencies.append(time.perf_counter() - t0)
            statuses.append(r.status)
            await asyncio.sleep(0.1)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=SECONDS + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    flood = orjson.loads(out)

    assert set(statuses) == {200}, statuses
    assert len(latencies) > 50
    p99 = _p99(latencies)
    assert p99 < 1.0, f"listing p99 {p99:.3f} s under the login flood"
    assert flood["broken_count"] == 0, flood["broken"]
    answered = flood["statuses"]
    assert answered.get("503", 0) > 0, answered  # the queue bound was reached
    assert answered.get("401", 0) + answered.get("423", 0) > 0, answered  # and logins evaluated
    assert set(answered) <= {"401", "423", "503"}, answered
    print(f"\nlisting p99 {p99 * 1000:.0f} ms over {len(latencies)} requests; flood {answered}")
