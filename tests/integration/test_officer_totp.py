"""RA officers' second factor with TOTP on the real gateway and PostgreSQL
(``[gateway] officer_second_factor = "optional"``): enrolment, the login step after the
password, single use of a code per period, the window, the lock, and ``ca-admin`` recovery.
The WebAuthn side runs in Chromium (tests/e2e/test_officer_webauthn.py)."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import sys
from datetime import timedelta
from typing import Any

import asyncpg
import pyotp
import pytest
from argon2 import PasswordHasher

from admin import cli
from db.queries import officers
from gateway import appkeys
from gateway.services.officer_factors import CHALLENGE_TTL
from tests.integration.conftest import Client, FakeClock

pytestmark = pytest.mark.asyncio(loop_scope="module")
PASSWORD = "officer-2fa-password"
COOKIE = "ca_ra_session"
_HASH = PasswordHasher().hash(PASSWORD)


async def _new_officer(owner_pool: asyncpg.Pool) -> str:
    login = f"ra-{secrets.token_hex(4)}"
    async with owner_pool.acquire() as conn:
        await officers.insert(conn, login, _HASH)
    return login


async def _login(new_client: Any, login: str) -> tuple[Client, Any]:
    c = new_client()
    r = await c.officer_login(login, PASSWORD)
    assert r.status == 200, r.text
    return c, r.json


def _code(secret: str, clock: FakeClock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock() + timedelta(seconds=30 * steps))


async def _enrol_totp(c: Client, clock: FakeClock) -> str:
    r = await c.call("POST", "/api/v1/ra/factors/totp/secret")
    assert r.status == 200, r.text
    secret = r.json["secret"]
    assert r.json["uri"].startswith("otpauth://totp/")
    assert pyotp.parse_uri(r.json["uri"]).secret == secret
    r = await c.call(
        "POST",
        "/api/v1/ra/factors/totp",
        {"challenge_id": r.json["challenge_id"], "code": _code(secret, clock), "name": "phone"},
    )
    assert r.status == 201, r.text
    assert r.json["factor"]["kind"] == "totp" and r.json["factor"]["name"] == "phone"
    assert r.json["csrf_token"] is None  # a complete session stays as it is
    return secret


async def _events(db_pool: asyncpg.Pool, login: str) -> list[str]:
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action FROM audit_events WHERE target = $1 ORDER BY id", login
        )
    return [r["action"] for r in rows]


async def _admin(monkeypatch: pytest.MonkeyPatch, database_url: str, *argv: str) -> int:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return await asyncio.to_thread(cli.main, list(argv))


async def test_without_a_factor_the_login_is_as_before(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool
) -> None:
    login = await _new_officer(owner_pool)
    c, body = await _login(new_client, login)
    assert body["second_factor"] is None
    assert (await c.call("GET", "/api/v1/ra/subscribers")).status == 200
    r = await c.call("GET", "/api/v1/ra/factors")
    assert r.json == {"factors": [], "policy": "optional", "second_factor": None}
    # nothing is due: the second-factor step is refused
    r = await c.call("POST", "/api/v1/ra/session/second-factor", {"totp_code": "123456"})
    assert (r.status, r.json["error"]) == (409, "second_factor_not_due")


async def test_enrol_then_every_login_needs_the_code(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock
) -> None:
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    secret = await _enrol_totp(c, clock)
    await c.call("DELETE", "/api/v1/ra/session")

    d, body = await _login(new_client, login)
    assert body["second_factor"] == "verify"
    pending = d.cookie(COOKIE)
    # the password alone reaches nothing of the RA API ...
    for method, path in (
        ("GET", "/api/v1/ra/subscribers"),
        ("GET", "/api/v1/ra/audit"),
        ("POST", "/api/v1/ra/subscribers"),
    ):
        r = await d.call(method, path, {} if method == "POST" else None)
        assert (r.status, r.json["error"]) == (403, "second_factor_required"), (method, path)
    # ... and cannot add a factor of its own
    for path in ("/api/v1/ra/factors/totp/secret", "/api/v1/ra/factors/webauthn/options"):
        r = await d.call("POST", path)
        assert (r.status, r.json["error"]) == (403, "second_factor_required"), path
    r = await d.call("GET", "/api/v1/ra/factors")
    assert r.json["second_factor"] == "verify" and [f["kind"] for f in r.json["factors"]] == [
        "totp"
    ]
    # no WebAuthn key enrolled: no WebAuthn challenge
    r = await d.call("POST", "/api/v1/ra/session/webauthn-options")
    assert (r.status, r.json["error"]) == (409, "not_enrolled")

    # the enrolment's code was used in this period: not again
    r = await d.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": _code(secret, clock)}
    )
    assert (r.status, r.json["error"]) == (401, "second_factor_failed")
    clock.advance(30)
    code = _code(secret, clock)
    r = await d.call("POST", "/api/v1/ra/session/second-factor", {"totp_code": code})
    assert r.status == 200, r.text
    assert r.json["csrf_token"] != d.csrf
    assert d.cookie(COOKIE) != pending  # a new session replaces the marked one
    d.csrf = r.json["csrf_token"]
    assert (await d.call("GET", "/api/v1/ra/subscribers")).status == 200
    # the marked session is gone
    old = new_client()
    old.set_cookie(COOKIE, pending)
    assert (await old.call("GET", "/api/v1/ra/factors")).status == 401

    # the same code in another login of the same period: refused
    e, _ = await _login(new_client, login)
    r = await e.call("POST", "/api/v1/ra/session/second-factor", {"totp_code": code})
    assert (r.status, r.json["error"]) == (401, "second_factor_failed")
    events = await _events(db_pool, login)
    for action in (
        "officer_factor_enrolled",
        "officer_second_factor_failed",
        "officer_second_factor_succeeded",
    ):
        assert action in events, events


async def test_the_window_is_one_step(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock
) -> None:
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    secret = await _enrol_totp(c, clock)
    clock.advance(120)
    d, _ = await _login(new_client, login)
    r = await d.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": _code(secret, clock, -2)}
    )
    assert (r.status, r.json["error"]) == (401, "second_factor_failed")
    r = await d.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": _code(secret, clock, -1)}
    )
    assert r.status == 200, r.text
    # a later step may follow, an earlier one may not (the last step used only grows)
    e, _ = await _login(new_client, login)
    r = await e.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": _code(secret, clock, -2)}
    )
    assert r.status == 401
    r = await e.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": _code(secret, clock, 1)}
    )
    assert r.status == 200, r.text


async def test_enrolment_challenges_are_single_use_and_short_lived(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock
) -> None:
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    r = await c.call("POST", "/api/v1/ra/factors/totp/secret")
    cid, secret = r.json["challenge_id"], r.json["secret"]
    wrong = f"{(int(_code(secret, clock)) + 1) % 1000000:06d}"
    r = await c.call("POST", "/api/v1/ra/factors/totp", {"challenge_id": cid, "code": wrong})
    assert (r.status, r.json["error"]) == (400, "factor_rejected")
    # the failed attempt used the challenge up
    r = await c.call(
        "POST", "/api/v1/ra/factors/totp", {"challenge_id": cid, "code": _code(secret, clock)}
    )
    assert (r.status, r.json["error"]) == (400, "bad_challenge")
    # expired
    r = await c.call("POST", "/api/v1/ra/factors/totp/secret")
    cid, secret = r.json["challenge_id"], r.json["secret"]
    clock.advance(CHALLENGE_TTL.total_seconds() + 1)
    r = await c.call(
        "POST", "/api/v1/ra/factors/totp", {"challenge_id": cid, "code": _code(secret, clock)}
    )
    assert (r.status, r.json["error"]) == (400, "bad_challenge")
    # another session's challenge (same officer) is not this session's
    r = await c.call("POST", "/api/v1/ra/factors/totp/secret")
    cid, secret = r.json["challenge_id"], r.json["secret"]
    other, _ = await _login(new_client, login)
    r = await other.call(
        "POST", "/api/v1/ra/factors/totp", {"challenge_id": cid, "code": _code(secret, clock)}
    )
    assert (r.status, r.json["error"]) == (400, "bad_challenge")
    assert (await c.call("GET", "/api/v1/ra/factors")).json["factors"] == []


async def test_second_factor_failures_lock_even_behind_a_right_password(
    owner_pool: asyncpg.Pool,
    new_client: Any,
    db_pool: asyncpg.Pool,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
) -> None:
    """A right password resets the password failures; it must not reset the count of wrong
    codes, or a known password would allow guessing codes forever."""
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    secret = await _enrol_totp(c, clock)
    wrong = f"{(int(_code(secret, clock)) + 500000) % 1000000:06d}"
    statuses = []
    for _ in range(5):
        d, body = await _login(new_client, login)  # a fresh right password each time
        assert body["second_factor"] == "verify"
        r = await d.call("POST", "/api/v1/ra/session/second-factor", {"totp_code": wrong})
        statuses.append((r.status, r.json["error"]))
    assert statuses == [(401, "second_factor_failed")] * 4 + [(423, "account_locked")]
    assert (await c.call("GET", "/api/v1/ra/factors")).status == 401  # sessions ended
    r = await new_client().officer_login(login, PASSWORD)
    assert (r.status, r.json["error"]) == (423, "account_locked")
    assert "officer_locked" in await _events(db_pool, login)

    assert await _admin(monkeypatch, database_url, "unlock-officer", login) == 0
    clock.advance(30)
    d, _ = await _login(new_client, login)
    r = await d.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": _code(secret, clock)}
    )
    assert r.status == 200, r.text


async def test_ca_admin_lists_and_removes_factors(
    owner_pool: asyncpg.Pool,
    new_client: Any,
    db_pool: asyncpg.Pool,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    await _enrol_totp(c, clock)
    await _enrol_totp(c, clock)
    factors = (await c.call("GET", "/api/v1/ra/factors")).json["factors"]
    assert len(factors) == 2
    capsys.readouterr()
    assert await _admin(monkeypatch, database_url, "officer-factors", login) == 0
    listed = capsys.readouterr().out
    assert all(f"{f['id']}\ttotp\tphone" in listed for f in factors), listed

    # one factor by id; the officer's sessions end
    assert (
        await _admin(
            monkeypatch,
            database_url,
            "remove-officer-factors",
            login,
            "--id",
            str(factors[0]["id"]),
        )
        == 0
    )
    assert (await c.call("GET", "/api/v1/ra/factors")).status == 401
    _, body = await _login(new_client, login)
    assert body["second_factor"] == "verify"  # one is left
    # all of them: the officer logs in with the password alone again (policy optional)
    assert await _admin(monkeypatch, database_url, "remove-officer-factors", login) == 0
    e, body = await _login(new_client, login)
    assert body["second_factor"] is None
    assert (await e.call("GET", "/api/v1/ra/subscribers")).status == 200
    # nothing left to remove, unknown officers: errors
    assert await _admin(monkeypatch, database_url, "remove-officer-factors", login) == 1
    assert await _admin(monkeypatch, database_url, "officer-factors", "nobody-here") == 1
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT actor, details FROM audit_events WHERE action = 'officer_factor_removed' "
            "AND target = $1 ORDER BY id",
            login,
        )
    assert [r["actor"] for r in rows] == ["ca-admin", "ca-admin"]
    details = [
        json.loads(r["details"]) if isinstance(r["details"], str) else r["details"] for r in rows
    ]
    assert [f["id"] for f in details[0]["factors"]] == [factors[0]["id"]]
    assert [f["id"] for f in details[1]["factors"]] == [factors[1]["id"]]
    assert details[0]["sessions_ended"] >= 1


async def test_pending_session_can_log_out(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock
) -> None:
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    await _enrol_totp(c, clock)
    d, _ = await _login(new_client, login)
    assert (await d.call("DELETE", "/api/v1/ra/session")).status == 204
    assert (await d.call("GET", "/api/v1/ra/factors")).status == 401


async def test_challenges_stay_bounded_and_expire(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock, server: Any
) -> None:
    """One outstanding challenge per session and purpose; expired ones are purged."""
    login = await _new_officer(owner_pool)
    c, _ = await _login(new_client, login)
    for _ in range(5):
        assert (await c.call("POST", "/api/v1/ra/factors/totp/secret")).status == 200
    count = "SELECT count(*) FROM officer_factor_challenges WHERE officer_id = $1"
    async with db_pool.acquire() as conn:
        officer_id = await conn.fetchval("SELECT id FROM ra_officers WHERE login = $1", login)
        assert await conn.fetchval(count, officer_id) == 1
    clock.advance(CHALLENGE_TTL.total_seconds() + 1)
    assert await server.app[appkeys.OFFICER_FACTORS].purge_expired(clock()) >= 1
    async with db_pool.acquire() as conn:
        assert await conn.fetchval(count, officer_id) == 0
