"""Integration fixtures: one embedded PostgreSQL per test session (in a temporary folder),
a fresh database per test module, and the gateway on a real localhost port.

As in production, every module's database belongs to the owner role (``owner_url``), which
runs the migrations; the gateway's pool (``db_pool``) connects as the application role
(``app_url``) with only its grants, so every test through the gateway also proves those grants
suffice. ``database_url`` is the superuser's, for tests that play an attacker with more rights.

Test modules run in one event loop per module::

    pytestmark = pytest.mark.asyncio(loop_scope="module")
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher
from yarl import URL

from db import roles
from db.embedded import Cluster
from db.migrate import migrate
from db.pool import connect, create_pool
from db.queries import officers
from gateway.app import make_app
from gateway.config import GatewayConfig, RateLimits
from signer.errors import ErrorKind, SignerError
from tests.support.identities import national_id

OFFICER_LOGIN = "ra-test"
OFFICER_PASSWORD = "officer-password-123"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class StubSigner:
    def __init__(self, healthy: bool = False) -> None:
        self.healthy = healthy

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health(self) -> dict[str, Any]:
        if not self.healthy:
            raise SignerError(ErrorKind.UNAVAILABLE, "no signer answers (test stub)")
        return {"status": "ok"}


@dataclasses.dataclass
class Resp:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode()


class Client:
    """One browser: its own cookie jar; remembers the CSRF token of its last login."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = aiohttp.CookieJar(unsafe=True)
        self.http = aiohttp.ClientSession(cookie_jar=self.jar)
        self.csrf: str | None = None

    async def close(self) -> None:
        await self.http.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        csrf: bool = True,
    ) -> Resp:
        hdrs = dict(headers or {})
        if csrf and self.csrf and "X-CSRF-Token" not in hdrs:
            hdrs["X-CSRF-Token"] = self.csrf
        data = raw
        if body is not None:
            data = orjson.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, data=data, headers=hdrs) as r:
            return Resp(r.status, r.headers, await r.read())

    def set_cookie(self, name: str, value: str) -> None:
        self.jar.update_cookies({name: value}, response_url=URL(self.base))

    def cookie(self, name: str) -> str | None:
        for c in self.jar:
            if c.key == name:
                return c.value
        return None

    async def login(self, account: str, password: str, **extra: Any) -> Resp:
        r = await self.call(
            "POST", "/api/v1/session", {"account": account, "password": password, **extra}
        )
        if r.status == 200:
            self.csrf = r.json["csrf_token"]
        return r

    async def officer_login(
        self, login: str = OFFICER_LOGIN, password: str = OFFICER_PASSWORD
    ) -> Resp:
        r = await self.call("POST", "/api/v1/ra/session", {"login": login, "password": password})
        if r.status == 200:
            self.csrf = r.json["csrf_token"]
        return r


def subscriber_body(**over: Any) -> dict[str, Any]:
    tag = secrets.token_hex(4).upper()
    id_number = national_id()  # a real check digit: the gateway refuses made-up numbers
    body: dict[str, Any] = {
        "id_number": id_number,
        "name": "王小明",
        "email": f"user{tag.lower()}@example.tw",
        "phone": "02-1234-5678",
        "address": "台北市中正區重慶南路一段 122 號",
        "subject": {"cn": f"{id_number}-63-WANG", "ou": ["Citizens"], "o": "Example", "c": "TW"},
        "usages": ["signing", "encryption"],
    }
    body.update(over)
    return body


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="ca-pg-"))
    os.chmod(root, 0o755)  # the server may run as the postgres user (when tests run as root)
    cluster = Cluster(root / "pg")
    cluster.init(fast=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def db_credentials() -> roles.Credentials:
    """The owner's and the application role's passwords for the whole test cluster."""
    return roles.Credentials(secrets.token_urlsafe(16), secrets.token_urlsafe(16))


def role_dsn(superuser_dsn: str, role: str, password: str) -> str:
    """``superuser_dsn`` with another role and its password (tests only: never in config)."""
    return superuser_dsn.replace("postgresql://ca@", f"postgresql://{role}:{password}@", 1)


async def provision_database(dsn: str, creds: roles.Credentials) -> None:
    """Roles and ownership as ``make run`` sets them up, then the migrations as the owner."""
    conn = await connect(dsn)
    try:
        await roles.provision(conn, creds)
    finally:
        await conn.close()
    conn = await connect(role_dsn(dsn, roles.OWNER, creds.owner_password))
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def database_url(
    pg_cluster: Cluster, db_credentials: roles.Credentials, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The module's database (owned by the owner role, migrated); the superuser's DSN."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    name = f"t_{stem[:40]}_{secrets.token_hex(3)}"
    dsn = pg_cluster.create_database(name)
    asyncio.run(provision_database(dsn, db_credentials))
    try:
        yield dsn
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture(scope="module")
def owner_url(database_url: str, db_credentials: roles.Credentials) -> str:
    return role_dsn(database_url, roles.OWNER, db_credentials.owner_password)


@pytest.fixture(scope="module")
def app_url(database_url: str, db_credentials: roles.Credentials) -> str:
    return role_dsn(database_url, roles.APP, db_credentials.app_password)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def owner_pool(owner_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The operator's side (ca-admin): officers are created and changed as the owner role,
    never with the gateway's application role."""
    pool = await create_pool(owner_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db_pool(app_url: str, owner_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The gateway's pool: the application role, nothing more."""
    conn = await connect(owner_url)  # officers are created by ca-admin, as the owner
    try:
        await officers.insert(conn, OFFICER_LOGIN, PasswordHasher().hash(OFFICER_PASSWORD))
    finally:
        await conn.close()
    pool = await create_pool(app_url, min_size=1, max_size=8)
    try:
        assert await pool.fetchval("SELECT current_user") == roles.APP
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def signer() -> StubSigner:
    return StubSigner(healthy=False)


@pytest.fixture(scope="module")
def gateway_config(app_url: str, request: pytest.FixtureRequest) -> GatewayConfig:
    """Captcha and rate limits off unless the module sets ``GATEWAY_OVERRIDES = {"captcha":
    True, "ratelimit": RateLimits(...), ...}``: every test client is 127.0.0.1 on a clock that
    only moves when told, so the address limits would otherwise trip across unrelated tests."""
    overrides = getattr(request.module, "GATEWAY_OVERRIDES", {})
    return dataclasses.replace(
        GatewayConfig(
            captcha=False, database_url=app_url, migrate_on_start=False, ratelimit=RateLimits.off()
        ),
        **overrides,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    gateway_config: GatewayConfig, db_pool: asyncpg.Pool, clock: FakeClock, signer: StubSigner
) -> AsyncIterator[TestServer]:
    app = make_app(gateway_config, db_pool=db_pool, clock=clock, signer_client=signer)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture(scope="module")
def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest_asyncio.fixture(loop_scope="module")
async def new_client(base_url: str) -> AsyncIterator[Any]:
    """A factory of independent browsers, closed after the test."""
    made: list[Client] = []

    def make() -> Client:
        c = Client(base_url)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            await c.close()


@pytest_asyncio.fixture(loop_scope="module")
async def officer(new_client: Any) -> Client:
    c = new_client()
    r = await c.officer_login()
    assert r.status == 200, r.text
    return c


async def register(officer: Client, **over: Any) -> dict[str, Any]:
    r = await officer.call("POST", "/api/v1/ra/subscribers", subscriber_body(**over))
    assert r.status == 201, r.text
    return r.json


async def active_subscriber(
    new_client: Any, officer: Client, new_password: str = "s3cret-pw"
) -> tuple[Client, dict[str, Any], str]:
    """Registered, logged in, password changed: ready for normal use."""
    slip = await register(officer)
    c = new_client()
    r = await c.login(slip["account"], slip["initial_password"])
    assert r.status == 200, r.text
    r = await c.call(
        "POST",
        "/api/v1/password",
        {"old_password": slip["initial_password"], "new_password": new_password},
    )
    assert r.status == 204, r.text
    return c, slip, new_password
