"""The database goes away under load and comes back: retryable 503s, never a 500, and the same
gateway serves again within 2 s of the database being back.

This module has a PostgreSQL cluster of its own (``pg_cluster`` below): it stops it with
``pg_ctl stop -m immediate`` (every backend killed, crash recovery at the next start) and makes
it read-only with ``ALTER SYSTEM SET default_transaction_read_only`` + reload, which no other
module must see.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from db.embedded import Cluster, find_bindir
from db.pool import create_pool
from gateway import dbfaults
from gateway.app import make_app
from tests.integration.conftest import Client, StubSigner

pytestmark = pytest.mark.asyncio(loop_scope="module")
GATEWAY_OVERRIDES = {"captcha": True}  # GET /api/v1/captcha: a cheap write (one INSERT)
BACK_WITHIN = 2.0  # seconds after the database is back, every request succeeds again


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Cluster]:
    """This module's own cluster (the shared one must never be stopped or made read-only)."""
    root = Path(tempfile.mkdtemp(prefix="ca-pg-outage-"))
    os.chmod(root, 0o755)  # the server may run as the postgres user (tests run as root)
    cluster = Cluster(root / "pg")
    cluster.init(fast=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def signer() -> StubSigner:
    return StubSigner(healthy=True)  # /readyz then depends on the database alone


def stop_immediately(cluster: Cluster) -> None:
    """``pg_ctl stop -m immediate``: the postmaster SIGQUITs every backend, like a crash."""
    cluster._run(
        [
            str(find_bindir() / "pg_ctl"),
            "stop",
            "-D",
            str(cluster.data_dir),
            "-m",
            "immediate",
            "-w",
        ]
    )


@dataclass
class Call:
    started: float
    ended: float
    path: str
    status: int
    error: str | None
    retry_after: str | None


async def load(client: Client, paths: list[str], stop: asyncio.Event, calls: list[Call]) -> None:
    """One caller going round ``paths`` until ``stop``; a refused connection would be a
    gateway failure, so every call must produce an HTTP answer."""
    i = 0
    while not stop.is_set():
        path = paths[i % len(paths)]
        i += 1
        t0 = time.monotonic()
        r = await client.call("GET", path)
        body = r.json if r.headers.get("Content-Type", "").startswith("application/json") else {}
        calls.append(
            Call(
                t0,
                time.monotonic(),
                path,
                r.status,
                (body or {}).get("error"),
                r.headers.get("Retry-After"),
            )
        )
        await asyncio.sleep(0.01)


def check_calls(calls: list[Call], back_at: float) -> None:
    statuses = {c.status for c in calls}
    assert statuses <= {200, 503}, sorted(statuses)
    failed = [c for c in calls if c.status == 503]
    assert failed, "the outage was never seen: the test did not test anything"
    for c in failed:
        assert c.error == "database_unavailable" and c.retry_after, c
    late = [c for c in calls if c.started >= back_at + BACK_WITHIN]
    assert len(late) > 20, len(late)  # the load went on long enough to judge the recovery
    assert all(c.status == 200 for c in late), [c for c in late if c.status != 200][:3]


def outage_logs(caplog: pytest.LogCaptureFixture) -> tuple[int, list[str]]:
    warnings = [r for r in caplog.records if r.name == "gateway.database"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return len(warnings), errors


async def readyz(base_url: str) -> Any:
    c = Client(base_url)
    try:
        return await c.call("GET", "/readyz")
    finally:
        await c.close()


async def test_immediate_stop_under_load_gives_503_then_recovers(
    pg_cluster: Cluster,
    officer: Client,
    base_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(dbfaults.outages, "last_error", float("-inf"))  # a new outage
    stop, calls = asyncio.Event(), []
    paths = ["/api/v1/ra/subscribers?q=x", "/api/v1/captcha", "/api/v1/ra/audit"]
    callers = [asyncio.create_task(load(officer, paths, stop, calls)) for _ in range(6)]
    await asyncio.sleep(0.7)
    await asyncio.to_thread(stop_immediately, pg_cluster)
    await asyncio.sleep(2.0)
    assert (await readyz(base_url)).status == 503
    await asyncio.to_thread(pg_cluster.start)
    back_at = time.monotonic()
    await asyncio.sleep(BACK_WITHIN + 1.5)
    stop.set()
    await asyncio.gather(*callers)
    check_calls(calls, back_at)
    assert (await readyz(base_url)).status == 200
    warnings, errors = outage_logs(caplog)
    assert 1 <= warnings <= 2, warnings  # one per outage, not one per failed request
    assert not errors, errors[:3]  # no "unhandled error" tracebacks
    print(f"{len(calls)} calls, {sum(c.status == 503 for c in calls)} answered 503")


async def test_read_only_database_gives_503_on_writes_and_readyz(
    officer: Client,
    base_url: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(dbfaults.outages, "last_error", float("-inf"))  # a new outage
    admin = await asyncpg.connect(database_url)
    stop, calls = asyncio.Event(), []
    try:
        await admin.execute("SET default_transaction_read_only = off")
        await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        await admin.execute("SELECT pg_reload_conf()")
        end = time.monotonic() + 5
        while (r := await readyz(base_url)).status != 503 and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert r.status == 503 and r.json["checks"]["database"] == "read_only", r.text

        # the captcha is an INSERT; an officer's session check locks its row (FOR UPDATE):
        # both writes, both refused while the database is read-only
        paths = ["/api/v1/captcha", "/api/v1/ra/subscribers?q=x"]
        callers = [asyncio.create_task(load(officer, paths, stop, calls)) for _ in range(4)]
        await asyncio.sleep(1.5)
        assert calls and all(c.status == 503 for c in calls), {c.status for c in calls}

        await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await admin.execute("SELECT pg_reload_conf()")
        back_at = time.monotonic()
        await asyncio.sleep(BACK_WITHIN + 1.5)
        stop.set()
        await asyncio.gather(*callers)
        check_calls(calls, back_at)
        assert (await readyz(base_url)).status == 200
    finally:
        stop.set()
        await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()
    warnings, errors = outage_logs(caplog)
    assert 1 <= warnings <= 2, warnings
    assert not errors, errors[:3]


async def test_pool_exhausted_answers_503_after_the_acquire_timeout(
    officer: Client, db_pool: asyncpg.Pool
) -> None:
    """Every connection held (stuck queries, a lock): a request waits at most the acquire
    timeout, then gets a retryable 503 instead of queueing without bound."""
    saved = db_pool.acquire_timeout  # type: ignore[attr-defined]
    db_pool.acquire_timeout = 0.5  # type: ignore[attr-defined]
    held = [await db_pool.acquire() for _ in range(db_pool.get_max_size())]
    try:
        t0 = time.monotonic()
        r = await officer.call("GET", "/api/v1/captcha")
        waited = time.monotonic() - t0
        assert r.status == 503 and r.json["error"] == "database_unavailable", r.text
        assert r.headers.get("Retry-After")
        assert waited < 3.0, waited
    finally:
        for conn in held:
            await db_pool.release(conn)
        db_pool.acquire_timeout = saved  # type: ignore[attr-defined]
    assert (await officer.call("GET", "/api/v1/captcha")).status == 200


async def test_readyz_on_a_standby_says_in_recovery(
    pg_cluster: Cluster, database_url: str, gateway_config: Any
) -> None:
    """A gateway whose database is a hot standby (a streaming replica: readable, every write
    refused) is not ready: /readyz 503 with ``in_recovery``."""
    standby = Cluster(pg_cluster.root.parent / "standby")
    standby._prepare_dirs()
    pg_cluster._run(
        [
            str(find_bindir() / "pg_basebackup"),
            "-D",
            str(standby.data_dir),
            "-h",
            str(pg_cluster.socket_dir),
            "-p",
            "5432",
            "-U",
            "ca",
            "-R",
            "-c",
            "fast",
            "-X",
            "stream",
        ]
    )
    with open(standby.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write(f"unix_socket_directories = '{standby.socket_dir}'\n")
    await asyncio.to_thread(standby.start)
    name = urlsplit(database_url).path.lstrip("/")
    pool = await create_pool(standby.dsn(name), min_size=1, max_size=2)
    app = make_app(
        dataclasses.replace(gateway_config, migrate_on_start=False),
        db_pool=pool,
        signer_client=StubSigner(healthy=True),
    )
    srv = TestServer(app, host="127.0.0.1")
    try:
        await srv.start_server()
        r = await readyz(str(srv.make_url("")).rstrip("/"))
        assert r.status == 503 and r.json["checks"]["database"] == "in_recovery", r.text
    finally:
        await srv.close()
        await pool.close()
        await asyncio.to_thread(standby.stop)
