"""[ratelimit]: each limit trips at its configured value with 429 ``rate_limited`` and
Retry-After, refills with the (injected) clock, and ``0`` switches it off; an attempt over a
limit is not evaluated; inside the limits the lock comes on the 3rd / 5th failure as before.

Every client here is 127.0.0.1; the module trusts it as a proxy, so ``X-Forwarded-For`` names
the source address of each attempt (which also tests the trusted-proxy header).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher

from db.queries import officers
from gateway import appkeys
from gateway.config import RateLimits
from tests.integration.conftest import Client, FakeClock, Resp, active_subscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")
WINDOW = 60
PROXY = {"proxy_header": "X-Forwarded-For", "trusted_proxies": ("127.0.0.1/32",)}
# all on, small: the lock must still come first
ALL_ON = RateLimits(
    window_seconds=WINDOW,
    login_per_address=8,
    login_per_account=4,
    officer_login_per_address=8,
    officer_login_per_account=6,
    password_per_address=5,
    password_per_account=3,
    captcha_per_address=4,
    **PROXY,
)
GATEWAY_OVERRIDES = {"ratelimit": msgspec.structs.replace(RateLimits.off(), **PROXY)}
OFFICER_PW = "limits-officer-pw"


def _addr() -> str:
    return f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def _xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


class Limits:
    """Switch the running gateway's limits (the limiter reads them on every attempt)."""

    def __init__(self, server: TestServer) -> None:
        self.limiter = server.app[appkeys.RATELIMITS]

    def only(self, **on: int) -> None:
        self.limiter.limits = msgspec.structs.replace(
            RateLimits.off(), window_seconds=WINDOW, **PROXY, **on
        )

    def set(self, limits: RateLimits) -> None:
        self.limiter.limits = limits

    def off(self) -> None:
        self.limiter.limits = msgspec.structs.replace(RateLimits.off(), **PROXY)


@pytest.fixture
def limits(server: TestServer) -> Any:
    lim = Limits(server)
    try:
        yield lim
    finally:
        lim.off()


async def _login(c: Client, account: str, password: str, address: str) -> Resp:
    return await c.call(
        "POST", "/api/v1/session", {"account": account, "password": password}, headers=_xff(address)
    )


async def _officer_login(c: Client, login: str, password: str, address: str) -> Resp:
    return await c.call(
        "POST", "/api/v1/ra/session", {"login": login, "password": password}, headers=_xff(address)
    )


async def _officer(owner_pool: asyncpg.Pool) -> str:
    login = f"ra-{secrets.token_hex(4)}"
    async with owner_pool.acquire() as conn:
        await officers.insert(conn, login, PasswordHasher().hash(OFFICER_PW))
    return login


Attempt = Callable[[], Awaitable[Resp]]


async def _scenario(
    officer: Client, new_client: Any, owner_pool: asyncpg.Pool, name: str
) -> tuple[Attempt, Attempt, int]:
    """For limit ``name``: an attempt that always hits the same bucket (varying everything
    else), one that hits another bucket of that limit, and the status of an allowed attempt."""
    if name == "login_per_address":  # unknown names, one address
        a, other = _addr(), _addr()
        c = new_client()
        return (
            lambda: _login(c, "zz" + secrets.token_hex(4), "pw-guess", a),
            lambda: _login(c, "zz" + secrets.token_hex(4), "pw-guess", other),
            401,
        )
    if name == "login_per_account":  # the right password, from everywhere
        _, slip, pw = await active_subscriber(new_client, officer)
        _, slip2, pw2 = await active_subscriber(new_client, officer)
        c = new_client()
        return (
            lambda: _login(c, slip["account"], pw, _addr()),
            lambda: _login(c, slip2["account"], pw2, _addr()),
            200,
        )
    if name == "officer_login_per_address":
        a, other = _addr(), _addr()
        c = new_client()
        return (
            lambda: _officer_login(c, "ra-" + secrets.token_hex(4), "pw-guess", a),
            lambda: _officer_login(c, "ra-" + secrets.token_hex(4), "pw-guess", other),
            401,
        )
    if name == "officer_login_per_account":
        login, login2 = await _officer(owner_pool), await _officer(owner_pool)
        c = new_client()
        return (
            lambda: _officer_login(c, login, OFFICER_PW, _addr()),
            lambda: _officer_login(c, login2, OFFICER_PW, _addr()),
            200,
        )
    if name in ("password_per_address", "password_per_account"):
        s, _, _ = await active_subscriber(new_client, officer)
        s2, _, _ = await active_subscriber(new_client, officer)
        a, other = _addr(), _addr()
        guess = {"old_password": "not-the-old-one", "new_password": "whatever-new"}
        if name == "password_per_address":
            return (
                lambda: s.call("POST", "/api/v1/password", guess, headers=_xff(a)),
                lambda: s.call("POST", "/api/v1/password", guess, headers=_xff(other)),
                401,
            )
        return (
            lambda: s.call("POST", "/api/v1/password", guess, headers=_xff(_addr())),
            lambda: s2.call("POST", "/api/v1/password", guess, headers=_xff(_addr())),
            401,
        )
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name,limit",
    [
        ("login_per_address", 4),
        ("login_per_account", 3),
        ("officer_login_per_address", 4),
        ("officer_login_per_account", 3),
        ("password_per_address", 3),
        ("password_per_account", 2),
    ],
)
async def test_limit_trips_at_its_value_refills_and_zero_switches_it_off(
    name: str,
    limit: int,
    limits: Limits,
    officer: Client,
    new_client: Any,
    owner_pool: asyncpg.Pool,
    clock: FakeClock,
) -> None:
    same, other, allowed = await _scenario(officer, new_client, owner_pool, name)
    limits.only(**{name: limit})
    for i in range(limit):
        assert (await same()).status == allowed, (name, i)
    r = await same()
    assert (r.status, r.json["error"]) == (429, "rate_limited"), name
    # the bucket refills one token every WINDOW / limit seconds
    assert int(r.headers["Retry-After"]) == -(-WINDOW // limit), r.headers
    assert (await other()).status == allowed  # another address / account: its own bucket

    clock.advance(WINDOW / limit)
    assert (await same()).status == allowed  # one token back
    assert (await same()).status == 429
    clock.advance(WINDOW)  # full again, and no more than full
    for _ in range(limit):
        assert (await same()).status == allowed
    assert (await same()).status == 429

    limits.only(**{name: 0})  # 0: switched off, the same bucket no longer matters
    for _ in range(limit + 2):
        assert (await same()).status == allowed


async def test_over_the_limit_is_not_evaluated(
    limits: Limits, officer: Client, new_client: Any, db_pool: asyncpg.Pool, server: TestServer
) -> None:
    """Refused before anything: no captcha, no Argon2, no failure counted, no audit row; the
    right password is refused just the same."""
    _, slip, pw = await active_subscriber(new_client, officer)
    limits.only(login_per_account=2)
    c = new_client()
    for _ in range(2):
        assert (await _login(c, slip["account"], "wrong", _addr())).status == 401
    hashing = server.app[appkeys.ACCOUNTS].passwords.executor
    done_before = hashing.completed
    failed_events = await db_pool.fetchval("SELECT count(*) FROM audit_events")
    for password in ("wrong", pw):
        r = await _login(c, slip["account"], password, _addr())
        assert (r.status, r.json["error"]) == (429, "rate_limited")
        assert "Set-Cookie" not in r.headers
    assert hashing.completed == done_before
    assert await db_pool.fetchval("SELECT count(*) FROM audit_events") == failed_events
    row = await db_pool.fetchrow(
        "SELECT failed_attempts, locked_at FROM accounts WHERE account = $1", slip["account"]
    )
    assert (row["failed_attempts"], row["locked_at"]) == (2, None)  # not locked by the 429s


async def test_lock_comes_first_inside_the_limits(
    owner_pool: asyncpg.Pool,
    limits: Limits,
    officer: Client,
    new_client: Any,
    db_pool: asyncpg.Pool,
) -> None:
    """All limits on: the 3rd subscriber / 5th officer failure still answers 423, for known and
    unknown names alike."""
    limits.set(ALL_ON)
    _, slip, _ = await active_subscriber(new_client, officer)
    a = _addr()
    c = new_client()
    for name in (slip["account"], "zz" + secrets.token_hex(4)):
        got = [(await _login(c, name, f"wrong-{i}", a)).status for i in range(3)]
        assert got == [401, 401, 423], (name, got)
    login = await _officer(owner_pool)
    for name in (login, "ra-" + secrets.token_hex(4)):
        b = _addr()  # 2 x 5 attempts would pass officer_login_per_address (8)
        got = [(await _officer_login(c, name, f"wrong-{i}", b)).status for i in range(5)]
        assert got == [401, 401, 401, 401, 423], (name, got)
