"""Retried applications after real faults: the answer lost after the commit, the database
connection killed at commit time, and ``kill -9`` of a ``ca-gateway`` process mid-load.

Whatever committed is what the retry meets: a stored certificate comes back (200, the same
object), never 409 ``already_has_valid`` and never "apply again"; an application whose gateway
died before storing it is failed by the pending sweep, so the retry succeeds within a minute.

The module has its own PostgreSQL cluster with ``synchronous_standby_names`` naming a standby
that never comes: a session with ``synchronous_commit = on`` then waits, after its commit is
written and before the client hears of it, in the ``SyncRep`` wait event. That is the exact
moment "commit outcome unknown" needs, reliably: the test terminates the backend there (the
transaction stays committed, the gateway's connection is gone) or cancels the wait (the commit
is confirmed, with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest
from cryptography import x509

from gateway import terms
from tests.integration import lifecycle
from tests.integration.conftest import Client, active_subscriber, register
from tests.integration.lifecycle import apply, csr_pem, new_key

pytestmark = pytest.mark.asyncio(loop_scope="module")
CA_KEY_TYPE = "p256"
GATEWAY_OVERRIDES = {"pending_sweep_seconds": 1}
BIN = Path(sys.executable).parent

ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Any]:
    """This module's own cluster, with a synchronous standby that never connects."""
    from db.embedded import Cluster

    root = Path(tempfile.mkdtemp(prefix="ca-pg-commit-"))
    os.chmod(root, 0o755)  # the server may run as the postgres user (tests run as root)
    cluster = Cluster(root / "pg")
    cluster.init(fast=True)
    cluster.start()
    cluster._psql("ALTER SYSTEM SET synchronous_standby_names = 'never_connects'")
    cluster._psql("SELECT pg_reload_conf()")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def clock() -> Any:
    """The real clock: the pending sweep compares rows' ages with it."""
    return lambda: datetime.now(UTC)


async def certificate_rows(db: asyncpg.Pool, subscriber_id: int, usage: str) -> list[Any]:
    return await db.fetch(
        "SELECT id, serial, status FROM certificates WHERE subscriber_id = $1 AND usage = $2 "
        "ORDER BY id",
        subscriber_id,
        usage,
    )


async def issued_events(db: asyncpg.Pool, serial: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'certificate_issued' AND target = $1",
        serial,
    )


# -- 1: the answer is lost after the commit ----------------------------------------------------
async def send_unread(base_url: str, client: Client, body: dict[str, Any]) -> asyncio.StreamWriter:
    """POST the application on a raw connection whose answer nobody will read (a client that
    timed out); the caller aborts the connection later."""
    url = urlsplit(base_url)
    payload = orjson.dumps(body)
    cookie = "; ".join(f"{m.key}={m.value}" for m in client.jar)
    head = (
        f"POST /api/v1/certificates HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        f"Cookie: {cookie}\r\nX-CSRF-Token: {client.csrf}\r\nConnection: close\r\n\r\n"
    )
    _reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(head.encode() + payload)
    await writer.drain()
    return writer


async def test_retry_after_a_lost_answer_gets_the_stored_certificate(
    new_client: Any, officer: Client, base_url: str, db_pool: asyncpg.Pool
) -> None:
    c, slip, _ = await active_subscriber(new_client, officer)
    key = new_key("p256")
    csr = csr_pem(key)
    lost = await send_unread(
        base_url, c, {"usage": "signing", "csr": csr, "terms_version": terms.VERSION}
    )
    end = time.monotonic() + 15
    while time.monotonic() < end:
        rows = await certificate_rows(db_pool, slip["subscriber_id"], "signing")
        if rows and rows[-1]["status"] == "issued":
            break
        await asyncio.sleep(0.05)
    lost.transport.abort()  # the answer is never read
    assert [r["status"] for r in rows] == ["issued"], rows
    stored = rows[0]

    for _ in range(2):  # the same retry, twice: the same answer
        r = await apply(c, "signing", csr)
        assert r.status == 200, r.text
        assert r.json["id"] == stored["id"], r.json
        assert r.json["serial"] == stored["serial"] and r.json["status"] == "issued"
        cert = x509.load_pem_x509_certificate(r.json["certificate"].encode())
        assert cert.public_key() == key.public_key()
    # one certificate, one audit event: the retry wrote nothing
    assert len(await certificate_rows(db_pool, slip["subscriber_id"], "signing")) == 1
    assert await issued_events(db_pool, stored["serial"]) == 1
    # another key is another application: the one-valid-certificate rule still holds
    r = await apply(c, "signing", csr_pem(new_key("p256")))
    assert r.status == 409 and r.json["error"] == "already_has_valid", r.text


# -- 2: the database connection dies at commit time ---------------------------------------------
class CommitKiller:
    """Watches for the gateway's sessions waiting in ``SyncRep`` (committed, not confirmed):
    terminates the first one running each of ``targets``, holds those running a ``hold``
    statement until ``release()``, and lets every other one go on (cancelling the wait
    confirms the commit)."""

    def __init__(self, dsn: str, targets: list[str], hold: tuple[str, ...] = ()) -> None:
        self.dsn = dsn
        self.targets = list(targets)
        self.hold = hold
        self.held: set[int] = set()
        self.killed: list[str] = []
        self.confirmed = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CommitKiller:
        self.conn = await asyncpg.connect(self.dsn)
        await self.conn.execute("SET synchronous_commit = off")  # its own commits never wait
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            rows = await self.conn.fetch(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event = 'SyncRep' AND pid <> pg_backend_pid()"
            )
            for r in rows:
                query = r["query"] or ""
                target = next((t for t in self.targets if t in query), None)
                if any(h in query for h in self.hold):
                    self.held.add(r["pid"])
                elif target is not None:
                    self.targets.remove(target)
                    self.killed.append(target)
                    await self.conn.execute("SELECT pg_terminate_backend($1)", r["pid"])
                else:
                    self.confirmed += 1
                    await self.conn.execute("SELECT pg_cancel_backend($1)", r["pid"])
            await asyncio.sleep(0.003)

    def release(self) -> None:
        self.hold = ()  # the next round confirms the held commits

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task
        await self.conn.close()


@contextlib.asynccontextmanager
async def synchronous_commit(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[None]:
    """New sessions of the test database commit with ``synchronous_commit = on`` (so they wait
    in SyncRep) meanwhile; the in-process gateway's pool is renewed to pick the setting up (a
    gateway process started inside gets it from its first connection)."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        await db_pool.expire_connections()
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET synchronous_commit')
        await db_pool.expire_connections()
        await admin.close()


async def test_connection_killed_at_commit_time_is_checked_not_repeated(
    new_client: Any, officer: Client, db_pool: asyncpg.Pool, database_url: str
) -> None:
    """The pending row's commit and the issued row's commit each lose their connection after
    committing: the gateway looks both up instead of failing or writing again, and the client
    gets its certificate at the first attempt."""
    c, slip, _ = await active_subscriber(new_client, officer)
    targets = ["certificates_apply_batch", "certificates_issue_batch"]
    async with (
        CommitKiller(database_url, targets) as killer,
        synchronous_commit(database_url, db_pool),
    ):
        key = new_key("p256")
        r = await apply(c, "encryption", csr_pem(key))
        assert sorted(killer.killed) == targets, killer.killed
    assert r.status == 201, r.text
    assert (
        x509.load_pem_x509_certificate(r.json["certificate"].encode()).public_key()
        == key.public_key()
    )
    rows = await certificate_rows(db_pool, slip["subscriber_id"], "encryption")
    assert [(r_["serial"], r_["status"]) for r_ in rows] == [(r.json["serial"], "issued")]
    assert await issued_events(db_pool, r.json["serial"]) == 1


# -- 3: kill -9 of a gateway mid-load -----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_gateway(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    proc = subprocess.Popen(
        [str(BIN / "ca-gateway")], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    out.close()
    base = f"http://127.0.0.1:{env['CA_GATEWAY_PORT']}"
    end = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"ca-gateway exited: {log.read_text()[-2000:]}")
            try:
                async with http.get(base + "/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"ca-gateway not ready: {log.read_text()[-2000:]}")


async def test_gateway_killed_mid_load_retries_get_their_certificates(
    officer: Client, ca_config: Path, database_url: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """kill -9 of the gateway while a batch of issued rows is committed but not yet confirmed
    (held in SyncRep) and the applications behind it are pending: after a new gateway process
    starts, the retries of the committed ones get their stored certificates (200) and those of
    the pending ones succeed once the sweep has failed the abandoned rows (201)."""
    port = free_port()
    env = {
        **os.environ,
        "CA_CONFIG": str(ca_config),
        "DATABASE_URL": database_url,
        # the superuser DSN carries its own credentials; the file names the application
        # role's password file, which this test never writes (a named file must be readable)
        "CA_DATABASE_PASSWORD_FILE": "",
        "CA_GATEWAY_PORT": str(port),
        "CA_GATEWAY_CAPTCHA": "off",
        "CA_GATEWAY_PENDING_SWEEP_SECONDS": "1",
    }
    log = tmp_path / "gateway.log"
    base = f"http://127.0.0.1:{port}"
    clients: list[Client] = []

    async def subscriber(slip: dict[str, Any]) -> tuple[Client, dict[str, Any]]:
        # logged in through the in-process gateway: sessions live in the database, and the
        # cookie is good for any gateway on this host
        c = Client(officer.base)
        clients.append(c)
        r = await c.login(slip["account"], slip["initial_password"])
        assert r.status == 200, r.text
        r = await c.call(
            "POST",
            "/api/v1/password",
            {"old_password": slip["initial_password"], "new_password": "s3cret-pw"},
        )
        assert r.status == 204, r.text
        c.base = base
        return c, slip

    subscribers = await asyncio.gather(
        *[subscriber(slip) for slip in await asyncio.gather(*(register(officer) for _ in range(8)))]
    )
    ids = [s["subscriber_id"] for _, s in subscribers]
    killer = CommitKiller(database_url, [], hold=("certificates_issue_batch",))
    regime = synchronous_commit(database_url, db_pool)
    await killer.__aenter__()
    await regime.__aenter__()
    proc = await start_gateway(env, log)
    try:
        outcomes: Counter[str] = Counter()
        bad: list[str] = []
        done_at: list[float] = []

        async def applicant(c: Client, usage: str) -> None:
            key = new_key("p256")
            csr = csr_pem(key)
            end = time.monotonic() + 60
            first = True
            while time.monotonic() < end:
                try:
                    r = await apply(c, usage, csr)
                except aiohttp.ClientError:  # the gateway is dead or not up yet
                    outcomes["connection_error"] += 1
                    first = False
                    await asyncio.sleep(0.1)
                    continue
                if r.status in (200, 201):
                    cert = x509.load_pem_x509_certificate(r.json["certificate"].encode())
                    if cert.public_key() != key.public_key():
                        bad.append("a certificate for another key")
                    outcomes[f"{r.status}{'' if first else ' on retry'}"] += 1
                    done_at.append(time.monotonic())
                    return
                if r.status == 503:
                    outcomes[f"503 {r.json['error']}"] += 1
                    first = False
                    await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", 1))))
                    continue
                bad.append(f"{r.status} {r.text}")
                return
            bad.append("no certificate within 60 s")

        # the signing certificates first: a batch of them reaches its commit and is held ...
        tasks = [asyncio.create_task(applicant(c, "signing")) for c, _ in subscribers]
        end = time.monotonic() + 20
        while not killer.held and time.monotonic() < end:
            await asyncio.sleep(0.002)
        assert killer.held, "no batch of issued rows ever reached its commit"
        # ... then the encryption ones, which wait behind it as pending rows
        tasks += [asyncio.create_task(applicant(c, "encryption")) for c, _ in subscribers]
        while time.monotonic() < end and await db_pool.fetchval(
            "SELECT count(*) FROM certificates WHERE status = 'pending' AND usage = "
            "'encryption' AND subscriber_id = ANY($1::bigint[])",
            ids,
        ) < len(subscribers):
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        killer.release()  # the held commits are confirmed: issued rows nobody was told about
        await asyncio.sleep(0.1)
        counts = {
            r["status"]: r["n"]
            for r in await db_pool.fetch(
                "SELECT status, count(*) AS n FROM certificates "
                "WHERE subscriber_id = ANY($1::bigint[]) GROUP BY status",
                ids,
            )
        }
        proc = await start_gateway(env, log)  # a new process, the same port
        await asyncio.wait_for(asyncio.gather(*tasks), 90)

        print(
            f"kill -9 left {counts}; outcomes {dict(outcomes)}; last certificate "
            f"{max(done_at) - killed_at:.1f}s after the kill"
        )
        assert not bad, bad[:5]
        assert min(done_at) > killed_at  # nobody was answered before the kill
        # the committed-but-unanswered ones come back as stored, the others are issued anew
        assert outcomes["200 on retry"] == counts.get("issued", 0) >= 1, (outcomes, counts)
        assert outcomes["201 on retry"] == len(tasks) - counts["issued"], outcomes
        assert counts.get("pending", 0) >= len(subscribers), counts  # abandoned, for the sweep
        assert max(done_at) - killed_at < 60
        # one issued certificate per subscriber and usage; nothing left pending
        per = await db_pool.fetch(
            "SELECT subscriber_id, usage, count(*) AS n FROM certificates WHERE status = "
            "'issued' AND subscriber_id = ANY($1::bigint[]) GROUP BY 1, 2",
            ids,
        )
        assert len(per) == len(tasks) and all(p["n"] == 1 for p in per), per
        assert (
            await db_pool.fetchval("SELECT count(*) FROM certificates WHERE status = 'pending'")
            == 0
        )
    finally:
        for c in clients:
            await c.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await regime.__aexit__(None, None, None)
        await killer.__aexit__(None, None, None)
