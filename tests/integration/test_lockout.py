"""The lock with Argon2 outside the transaction: concurrent failures still lock on the Nth;
unknown officer names lock like real ones; a locked officer is unlocked by another officer
with the unlock right (audited) or by ca-admin; the right is ca-admin's to give."""

from __future__ import annotations

import asyncio
import io
import secrets
import sys
from typing import Any

import asyncpg
import pytest
from argon2 import PasswordHasher

from admin import cli
from db.queries import officers
from tests.integration.conftest import OFFICER_PASSWORD, Client, active_subscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")
PASSWORD = "unlock-officer-pw"


async def _admin(
    monkeypatch: pytest.MonkeyPatch, database_url: str, *argv: str, stdin: str = ""
) -> int:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return await asyncio.to_thread(cli.main, list(argv))


async def _new_officer(owner_pool: asyncpg.Pool, *, can_unlock: bool = False) -> str:
    login = f"ra-{secrets.token_hex(4)}"
    async with owner_pool.acquire() as conn:
        await officers.insert(conn, login, PasswordHasher().hash(PASSWORD), can_unlock=can_unlock)
    return login


async def _events(db_pool: asyncpg.Pool, action: str, target: str) -> list[asyncpg.Record]:
    return await db_pool.fetch(
        "SELECT * FROM audit_events WHERE action = $1 AND target = $2 ORDER BY id", action, target
    )


async def test_concurrent_failures_lock_on_the_third(
    officer: Client, new_client: Any, db_pool: asyncpg.Pool
) -> None:
    """Argon2 runs with no row lock held, so wrong passwords for one account are verified at
    the same time: the count is still exact, exactly one attempt is the one that locks, and
    every attempt from the 3rd on answers 423."""
    _, slip, pw = await active_subscriber(new_client, officer)
    c = new_client()
    answers = await asyncio.gather(*(c.login(slip["account"], f"wrong-{i}") for i in range(6)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [401, 401, 423, 423, 423, 423], statuses
    row = await db_pool.fetchrow(
        "SELECT failed_attempts, locked_at FROM accounts WHERE account = $1", slip["account"]
    )
    assert row["failed_attempts"] == 6 and row["locked_at"] is not None
    assert len(await _events(db_pool, "account_locked", slip["account"])) == 1
    assert (await c.login(slip["account"], pw)).status == 423  # the right password too


async def test_concurrent_failures_of_an_unknown_name_lock_alike(new_client: Any) -> None:
    c = new_client()
    ghost = "zz" + secrets.token_hex(4)
    answers = await asyncio.gather(*(c.login(ghost, f"wrong-{i}") for i in range(6)))
    assert sorted(a.status for a in answers) == [401, 401, 423, 423, 423, 423]


async def test_right_password_racing_the_locking_failure(
    officer: Client, new_client: Any, db_pool: asyncpg.Pool
) -> None:
    """Two failures recorded, then the 3rd failure and the right password at once: whichever
    is recorded second sees the other's outcome (a success only counts on an unlocked row)."""
    _, slip, pw = await active_subscriber(new_client, officer)
    c = new_client()
    for i in range(2):
        assert (await c.login(slip["account"], f"wrong-{i}")).status == 401
    bad, good = await asyncio.gather(
        c.login(slip["account"], "wrong-3"), new_client().login(slip["account"], pw)
    )
    row = await db_pool.fetchrow(
        "SELECT failed_attempts, locked_at FROM accounts WHERE account = $1", slip["account"]
    )
    if good.status == 200:  # the success came first: the failure is the 1st of a new run
        assert bad.status == 401 and row["locked_at"] is None and row["failed_attempts"] == 1
    else:  # the failure locked first: the right password is refused like any other
        assert (bad.status, good.status) == (423, 423) and row["locked_at"] is not None


async def test_concurrent_officer_failures_lock_on_the_fifth(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool
) -> None:
    login = await _new_officer(owner_pool)
    c = new_client()
    answers = await asyncio.gather(*(c.officer_login(login, f"wrong-{i}") for i in range(7)))
    assert sorted(a.status for a in answers) == [401] * 4 + [423] * 3
    assert len(await _events(db_pool, "officer_locked", login)) == 1


def _comparable(r: Any) -> tuple[int, Any, list[str]]:
    return (
        r.status,
        r.json,
        sorted(h for h in r.headers if h.lower() not in {"date", "x-request-id"}),
    )


async def test_unknown_officer_names_lock_like_real_ones(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool
) -> None:
    """An unknown login reaches 423 on the 5th failure too: a 6th attempt tells nothing."""
    real = await _new_officer(owner_pool)
    ghost = f"ra-{secrets.token_hex(4)}"
    a, b = new_client(), new_client()
    for attempt in range(1, 8):
        ra = await a.officer_login(real, f"wrong-{attempt}")
        rb = await b.officer_login(ghost, f"wrong-{attempt}")
        assert _comparable(ra) == _comparable(rb), attempt
        assert ra.status == (401 if attempt < 5 else 423), attempt
    assert ra.json["error"] == "account_locked"
    # and the right password of the real one is refused the same way
    assert _comparable(await a.officer_login(real, PASSWORD)) == _comparable(rb)
    row = await db_pool.fetchrow(
        "SELECT failed_attempts FROM unknown_officer_failures WHERE login = $1", ghost
    )
    assert row["failed_attempts"] == 7
    # a login that failed before it was created starts clean
    async with owner_pool.acquire() as conn:
        await officers.insert(conn, ghost, PasswordHasher().hash(PASSWORD))
    assert (await b.officer_login(ghost, PASSWORD)).status == 200


async def test_officer_with_the_right_unlocks_another(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool
) -> None:
    locked = await _new_officer(owner_pool)
    unlocker = await _new_officer(owner_pool, can_unlock=True)
    plain = await _new_officer(owner_pool)
    victim = new_client()
    assert (await victim.officer_login(locked, PASSWORD)).status == 200
    for _ in range(5):
        await new_client().officer_login(locked, "wrong")
    assert (await new_client().officer_login(locked, PASSWORD)).status == 423
    assert (await victim.call("GET", "/api/v1/ra/subscribers")).status == 401  # session ended

    # an officer without the right is refused, and nothing changes
    p = new_client()
    assert (await p.officer_login(plain, PASSWORD)).status == 200
    r = await p.call("POST", f"/api/v1/ra/officers/{locked}/unlock")
    assert (r.status, r.json["error"]) == (403, "forbidden")
    r = await p.call("GET", "/api/v1/ra/officers")
    assert r.status == 200
    listed = {o["login"]: o for o in r.json["officers"]}
    assert listed[locked] == {
        "login": locked,
        "locked": True,
        "failed_attempts": 6,  # the right password on a locked officer counts too
        "can_unlock": False,
    }
    assert listed[unlocker]["can_unlock"] is True
    assert "password_hash" not in listed[locked]

    u = new_client()
    assert (await u.officer_login(unlocker, PASSWORD)).status == 200
    r = await u.call("POST", f"/api/v1/ra/officers/{locked}/unlock", csrf=False)
    assert (r.status, r.json["error"]) == (403, "csrf_failed")
    r = await u.call("POST", f"/api/v1/ra/officers/{locked}/unlock")
    assert r.status == 200
    assert r.json == {"login": locked, "locked": False, "failed_attempts": 0, "can_unlock": False}
    assert (await new_client().officer_login(locked, PASSWORD)).status == 200
    events = await _events(db_pool, "officer_unlocked", locked)
    assert len(events) == 1 and events[0]["actor"] == unlocker
    assert events[0]["details"]["was_locked"] is True

    for missing in ("nobody-here", "NOT_A_LOGIN", "x"):
        r = await u.call("POST", f"/api/v1/ra/officers/{missing}/unlock")
        assert (r.status, r.json["error"]) == (404, "not_found"), missing
    # without an officer session
    r = await new_client().call("POST", f"/api/v1/ra/officers/{locked}/unlock")
    assert (r.status, r.json["error"]) == (401, "unauthenticated")


async def test_ca_admin_gives_and_takes_the_right(
    owner_pool: asyncpg.Pool,
    new_client: Any,
    db_pool: asyncpg.Pool,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (
        await _admin(
            monkeypatch,
            database_url,
            "create-officer",
            "ra-chief",
            "--can-unlock",
            stdin="chief-officer-pw\n",
        )
        == 0
    )
    deputy = await _new_officer(owner_pool)
    target = await _new_officer(owner_pool)
    for _ in range(5):
        await new_client().officer_login(target, "wrong")
    chief = new_client()
    assert (await chief.officer_login("ra-chief", "chief-officer-pw")).status == 200
    d = new_client()
    assert (await d.officer_login(deputy, PASSWORD)).status == 200
    assert (await d.call("POST", f"/api/v1/ra/officers/{target}/unlock")).status == 403

    assert await _admin(monkeypatch, database_url, "grant-unlock", deputy) == 0
    assert (await d.call("POST", f"/api/v1/ra/officers/{target}/unlock")).status == 200
    # taken away: applies to the next request of the open session
    assert await _admin(monkeypatch, database_url, "revoke-unlock", "ra-chief") == 0
    assert (await chief.call("POST", f"/api/v1/ra/officers/{target}/unlock")).status == 403
    assert await _admin(monkeypatch, database_url, "grant-unlock", "nobody") == 1
    actions = [
        e["action"]
        for e in await db_pool.fetch(
            "SELECT action FROM audit_events WHERE action LIKE 'officer_unlock_right_%' ORDER BY id"
        )
    ]
    assert actions == ["officer_unlock_right_granted", "officer_unlock_right_revoked"]
    created = await _events(db_pool, "officer_created", "ra-chief")
    assert created[0]["details"]["can_unlock"] is True


async def test_every_officer_locked_ca_admin_recovers(
    owner_pool: asyncpg.Pool,
    new_client: Any,
    db_pool: asyncpg.Pool,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's recovery: with every officer locked (how is tested above; here the rows
    are locked directly), ca-admin on the server unlocks one with the unlock right, who then
    unlocks the others from the RA API."""
    assert await _admin(monkeypatch, database_url, "grant-unlock", "ra-test") == 0
    await owner_pool.execute("UPDATE ra_officers SET failed_attempts = 5, locked_at = now()")
    c = new_client()
    assert (await c.officer_login("ra-test", OFFICER_PASSWORD)).status == 423
    assert await _admin(monkeypatch, database_url, "unlock-officer", "ra-test") == 0
    assert (await c.officer_login("ra-test", OFFICER_PASSWORD)).status == 200
    others = [
        r["login"]
        for r in await db_pool.fetch("SELECT login FROM ra_officers WHERE locked_at IS NOT NULL")
    ]
    assert others
    for login in others:
        r = await c.call("POST", f"/api/v1/ra/officers/{login}/unlock")
        assert (r.status, r.json["locked"]) == (200, False), login
    assert not await db_pool.fetchval("SELECT bool_or(locked_at IS NOT NULL) FROM ra_officers")
    assert await _admin(monkeypatch, database_url, "revoke-unlock", "ra-test") == 0


async def test_openapi_describes_the_extensions(new_client: Any) -> None:
    doc = (await new_client().call("GET", "/api/v1/openapi.json")).json
    paths = doc["paths"]
    assert "get" in paths["/api/v1/ra/officers"]
    unlock = paths["/api/v1/ra/officers/{login}/unlock"]["post"]
    assert "forbidden" in unlock["responses"]["403"]["description"]
    for path in ("/api/v1/session", "/api/v1/ra/session", "/api/v1/password"):
        responses = paths[path]["post"]["responses"]
        assert "rate_limited" in responses["429"]["description"], path
        assert "busy" in responses["503"]["description"], path
        assert "Retry-After" in responses["429"]["headers"], path
    assert "rate_limited" in paths["/api/v1/captcha"]["get"]["responses"]["429"]["description"]
