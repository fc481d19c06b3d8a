"""Subscriber login: slip → first login → forced change → normal use; lockout; sessions."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.conftest import Client, FakeClock, active_subscriber, register

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_registration_to_normal_use(officer: Client, new_client: Any) -> None:
    slip = await register(officer)
    assert 10 <= len(slip["initial_password"]) <= 12
    c = new_client()
    r = await c.login(slip["account"], slip["initial_password"])
    assert r.status == 200
    assert r.json["must_change_password"] is True
    assert r.json["csrf_token"]

    # everything but me/terms/password/logout is refused until the change
    r = await c.call("GET", "/api/v1/certificates")
    assert (r.status, r.json["error"]) == (403, "password_change_required")
    r = await c.call("GET", "/api/v1/me")
    assert r.status == 200
    me = r.json
    assert me["account"] == slip["account"]
    assert set(me) == {
        "account",
        "id_number",
        "name",
        "subscriber_name",
        "email",
        "phone",
        "address",
        "usages",
    }
    assert me["usages"] == ["signing", "encryption"]
    r = await c.call("GET", "/api/v1/terms")
    assert r.status == 200 and r.json["version"] and "條款" in r.json["text"]

    old = slip["initial_password"]
    for bad in ("12345", "x" * 17, old):
        r = await c.call("POST", "/api/v1/password", {"old_password": old, "new_password": bad})
        assert (r.status, r.json["error"]) == (400, "password_policy"), bad
    r = await c.call(
        "POST", "/api/v1/password", {"old_password": "wrong-old", "new_password": "brand-new"}
    )
    assert (r.status, r.json["error"]) == (401, "invalid_credentials")
    # six CJK characters are six characters
    r = await c.call(
        "POST", "/api/v1/password", {"old_password": old, "new_password": "密碼很安全喔"}
    )
    assert r.status == 204

    # the same session and CSRF token keep working, now without restriction
    r = await c.call("GET", "/api/v1/certificates")
    assert (r.status, r.json) == (200, {"certificates": []})
    r = await c.call("DELETE", "/api/v1/session")
    assert r.status == 204
    r = await c.call("GET", "/api/v1/me")
    assert (r.status, r.json["error"]) == (401, "unauthenticated")

    c2 = new_client()
    assert (await c2.login(slip["account"], old)).status == 401
    r = await c2.login(slip["account"], "密碼很安全喔")
    assert r.status == 200 and r.json["must_change_password"] is False


async def test_wrong_old_password_does_not_count(officer: Client, new_client: Any) -> None:
    c, slip, pw = await active_subscriber(new_client, officer)
    for _ in range(4):
        r = await c.call(
            "POST", "/api/v1/password", {"old_password": "nope-nope", "new_password": "another1"}
        )
        assert r.status == 401
    assert (await new_client().login(slip["account"], pw)).status == 200


async def test_lock_on_third_failure_and_ra_reset(officer: Client, new_client: Any) -> None:
    a, slip, pw = await active_subscriber(new_client, officer)
    b = new_client()
    assert (await b.login(slip["account"], "wrong-1")).status == 401
    assert (await b.login(slip["account"], "wrong-2")).status == 401
    r = await b.login(slip["account"], "wrong-3")
    assert (r.status, r.json["error"]) == (423, "account_locked")
    r = await b.login(slip["account"], pw)  # the right password does not help now
    assert (r.status, r.json["error"]) == (423, "account_locked")
    # the lock ended the session that was open
    assert (await a.call("GET", "/api/v1/me")).status == 401

    found = await officer.call("GET", f"/api/v1/ra/subscribers?q={slip['account']}")
    sub = found.json["subscribers"][0]
    assert sub["locked"] is True and sub["failed_attempts"] >= 3

    sid = sub["subscriber_id"]
    r = await officer.call("POST", f"/api/v1/ra/subscribers/{sid}/password-reset")
    assert r.status == 200
    new = r.json
    assert new["account"] == slip["account"] and new["initial_password"] != slip["initial_password"]
    view = (await officer.call("GET", f"/api/v1/ra/subscribers/{sub['subscriber_id']}")).json
    assert (view["locked"], view["failed_attempts"], view["must_change_password"]) == (
        False,
        0,
        True,
    )
    assert (await b.login(slip["account"], pw)).status == 401  # old password is gone
    r = await b.login(slip["account"], new["initial_password"])
    assert r.status == 200 and r.json["must_change_password"] is True


async def test_success_resets_the_count(officer: Client, new_client: Any) -> None:
    _, slip, pw = await active_subscriber(new_client, officer)
    c = new_client()
    for _ in range(2):
        assert (await c.login(slip["account"], "bad-password")).status == 401
    assert (await c.login(slip["account"], pw)).status == 200
    for _ in range(2):
        assert (await c.login(slip["account"], "bad-password")).status == 401
    assert (await c.login(slip["account"], pw)).status == 200


async def test_reset_ends_sessions(officer: Client, new_client: Any) -> None:
    c, slip, _ = await active_subscriber(new_client, officer)
    view = (await officer.call("GET", f"/api/v1/ra/subscribers?q={slip['account']}")).json
    sid = view["subscribers"][0]["subscriber_id"]
    r = await officer.call("POST", f"/api/v1/ra/subscribers/{sid}/password-reset")
    assert r.status == 200
    assert (await c.call("GET", "/api/v1/me")).status == 401


def _comparable(r: Any) -> tuple[int, Any, str]:
    return r.status, r.json, r.headers.get("Content-Type", "")


async def test_no_account_enumeration(officer: Client, new_client: Any) -> None:
    _, slip, _ = await active_subscriber(new_client, officer)
    known, unknown = new_client(), new_client()
    ghost = "zz" + slip["account"][2:]  # same shape, does not exist
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for attempt in range(5):
        t0 = time.perf_counter()
        rk = await known.login(slip["account"], f"wrong-{attempt}")
        timings["known"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ru = await unknown.login(ghost, f"wrong-{attempt}")
        timings["unknown"].append(time.perf_counter() - t0)
        assert _comparable(rk) == _comparable(ru)
        assert rk.status == (401 if attempt < 2 else 423)
        assert set(rk.headers) == set(ru.headers)
    # both run one Argon2 verification: same order of magnitude
    fast = min(sorted(timings["known"])[2], sorted(timings["unknown"])[2])
    slow = max(sorted(timings["known"])[2], sorted(timings["unknown"])[2])
    assert slow < fast * 3


async def test_session_fixation_prevented(officer: Client, new_client: Any) -> None:
    _, slip, pw = await active_subscriber(new_client, officer)
    victim = new_client()
    # an attacker-chosen cookie is not adopted
    victim.set_cookie("ca_session", "attacker-chosen-value")
    assert (await victim.login(slip["account"], pw)).status == 200
    first = victim.cookie("ca_session")
    assert first and first != "attacker-chosen-value"
    # logging in again rotates the id and ends the old one
    assert (await victim.login(slip["account"], pw)).status == 200
    second = victim.cookie("ca_session")
    assert second != first
    stale = new_client()
    stale.set_cookie("ca_session", first)
    assert (await stale.call("GET", "/api/v1/me")).status == 401
    assert (await victim.call("GET", "/api/v1/me")).status == 200


async def test_cookie_attributes(officer: Client, new_client: Any) -> None:
    slip = await register(officer)
    c = new_client()
    r = await c.login(slip["account"], slip["initial_password"])
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("ca_session=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered.replace("samesite", "")  # plain HTTP here


async def test_csrf_required(officer: Client, new_client: Any) -> None:
    c, _, pw = await active_subscriber(new_client, officer)
    body = {"old_password": pw, "new_password": "next-pass"}
    r = await c.call("POST", "/api/v1/password", body, csrf=False)
    assert (r.status, r.json["error"]) == (403, "csrf_failed")
    r = await c.call("POST", "/api/v1/password", body, headers={"X-CSRF-Token": "forged"})
    assert (r.status, r.json["error"]) == (403, "csrf_failed")
    r = await c.call("DELETE", "/api/v1/session", csrf=False)
    assert (r.status, r.json["error"]) == (403, "csrf_failed")
    # the session is checked before the token
    r = await new_client().call("POST", "/api/v1/password", body, csrf=False)
    assert (r.status, r.json["error"]) == (401, "unauthenticated")
    # GET needs no token
    assert (await c.call("GET", "/api/v1/me", csrf=False)).status == 200


async def test_idle_and_absolute_timeouts(
    officer: Client, new_client: Any, clock: FakeClock
) -> None:
    c, slip, pw = await active_subscriber(new_client, officer)
    clock.advance(14 * 60)
    assert (await c.call("GET", "/api/v1/me")).status == 200
    clock.advance(16 * 60)
    assert (await c.call("GET", "/api/v1/me")).status == 401

    assert (await c.login(slip["account"], pw)).status == 200
    for _ in range(8 * 6 + 1):  # active every 10 minutes, a bit beyond eight hours
        clock.advance(10 * 60)
        if (await c.call("GET", "/api/v1/me")).status != 200:
            break
    else:
        pytest.fail("the absolute timeout did not end the session")
    assert (await c.call("GET", "/api/v1/me")).status == 401


async def test_subscriber_session_is_not_an_officer_session(
    officer: Client, new_client: Any
) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    r = await c.call("GET", "/api/v1/ra/subscribers")
    assert (r.status, r.json["error"]) == (401, "unauthenticated")
    r = await officer.call("GET", "/api/v1/me")
    assert (r.status, r.json["error"]) == (401, "unauthenticated")


async def test_requests_in_flight_share_one_session_check(
    officer: Client, new_client: Any, clock: FakeClock, db_pool: Any, server: Any
) -> None:
    """Concurrent requests are authenticated by one statement, and each still gets its own
    answer: live sessions pass (an old one is touched), an idle one is refused and deleted, an
    officer's session is no subscriber's, an unknown cookie is refused."""
    from gateway import appkeys
    from gateway.services.sessions import digest

    live = [await active_subscriber(new_client, officer) for _ in range(3)]
    idle_client, _, _ = await active_subscriber(new_client, officer)
    clients = [c for c, _, _ in live]
    hashes = {c: digest(c.cookie("ca_session") or "") for c in [*clients, idle_client]}
    now = clock()
    async with db_pool.acquire() as conn:
        await conn.execute(
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1",
            hashes[clients[0]],
            now - timedelta(minutes=5),
        )
        await conn.execute(
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1",
            hashes[idle_client],
            now - timedelta(minutes=16),
        )
    stranger = new_client()
    stranger.set_cookie("ca_session", "not-a-session")
    impostor = new_client()
    impostor.set_cookie("ca_session", officer.cookie("ca_ra_session") or "")

    batcher = server.app[appkeys.ACCOUNTS]._sessions
    batches_before = batcher.batches
    callers = [*clients, *clients, idle_client, stranger, impostor]
    answers = await asyncio.gather(*(c.call("GET", "/api/v1/me") for c in callers))
    assert [a.status for a in answers] == [200] * 6 + [401] * 3
    assert {a.json["error"] for a in answers[6:]} == {"unauthenticated"}
    assert [a.json["account"] for a in answers[:3]] == [a.json["account"] for a in answers[3:6]]
    assert batcher.batches - batches_before < len(callers)  # shared, not one per request

    async with db_pool.acquire() as conn:
        seen = dict(
            await conn.fetch(
                "SELECT id_hash, last_seen_at FROM sessions WHERE id_hash = ANY($1)",
                list(hashes.values()),
            )
        )
    assert hashes[idle_client] not in seen  # an idle session is deleted when it is presented
    assert seen[hashes[clients[0]]] == now  # touched: older than the touch interval
    assert (await idle_client.call("GET", "/api/v1/me")).status == 401


async def test_any_tab_gets_the_csrf_token(officer: Client, new_client: Any) -> None:
    """A second tab holds the cookie but not the login answer: GET /api/v1/session gives it the
    session's token, which then works for changes; logging out there ends the session for all."""
    first, slip, pw = await active_subscriber(new_client, officer)
    tab = new_client()  # the same cookie, nothing else
    tab.set_cookie("ca_session", first.cookie("ca_session") or "")
    r = await tab.call("POST", "/api/v1/password", {"old_password": pw, "new_password": "tab-2-pw"})
    assert (r.status, r.json["error"]) == (403, "csrf_failed")
    r = await tab.call("GET", "/api/v1/session")
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json == {"csrf_token": first.csrf, "must_change_password": False}
    tab.csrf = r.json["csrf_token"]
    r = await tab.call("POST", "/api/v1/password", {"old_password": pw, "new_password": "tab-2-pw"})
    assert r.status == 204
    # another session of the same account has another token
    other = new_client()
    assert (await other.login(slip["account"], "tab-2-pw")).status == 200
    assert other.csrf != first.csrf
    assert (await tab.call("DELETE", "/api/v1/session")).status == 204
    for c in (first, tab):
        assert (await c.call("GET", "/api/v1/session")).status == 401
        assert (await c.call("GET", "/api/v1/me")).status == 401
    assert (await other.call("GET", "/api/v1/me")).status == 200
    assert (await new_client().call("GET", "/api/v1/session")).status == 401


async def test_any_tab_gets_the_officer_csrf_token(officer: Client, new_client: Any) -> None:
    tab = new_client()
    tab.set_cookie("ca_ra_session", officer.cookie("ca_ra_session") or "")
    r = await tab.call("GET", "/api/v1/ra/session")
    assert r.status == 200 and r.json["csrf_token"] == officer.csrf and r.json["login"]
    # the subscriber endpoint knows nothing of officer sessions, and the other way round
    assert (await tab.call("GET", "/api/v1/session")).status == 401
    assert (await new_client().call("GET", "/api/v1/ra/session")).status == 401
