"""``[gateway] officer_second_factor = "required"``: an officer without a factor can only
enrol one, and the enrolment completes that login; from then on the factor is due at every
login. Real gateway and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import pyotp
import pytest
from argon2 import PasswordHasher

from db.queries import officers
from tests.integration.conftest import FakeClock

pytestmark = pytest.mark.asyncio(loop_scope="module")
GATEWAY_OVERRIDES = {"officer_second_factor": "required"}
PASSWORD = "officer-2fa-password"
COOKIE = "ca_ra_session"


async def test_required_means_enrol_first(
    owner_pool: asyncpg.Pool, new_client: Any, db_pool: asyncpg.Pool, clock: FakeClock
) -> None:
    login = f"ra-{secrets.token_hex(4)}"
    async with owner_pool.acquire() as conn:
        await officers.insert(conn, login, PasswordHasher().hash(PASSWORD))
    c = new_client()
    r = await c.officer_login(login, PASSWORD)
    assert r.status == 200 and r.json["second_factor"] == "enrol", r.text
    enrol_only = c.cookie(COOKIE)
    r = await c.call("GET", "/api/v1/ra/subscribers")
    assert (r.status, r.json["error"]) == (403, "second_factor_required")
    r = await c.call("GET", "/api/v1/ra/factors")
    assert r.json == {"factors": [], "policy": "required", "second_factor": "enrol"}
    # nothing to verify with yet
    r = await c.call("POST", "/api/v1/ra/session/second-factor", {"totp_code": "000000"})
    assert (r.status, r.json["error"]) == (409, "second_factor_not_due")

    r = await c.call("POST", "/api/v1/ra/factors/totp/secret")
    assert r.status == 200, r.text
    secret = r.json["secret"]
    r = await c.call(
        "POST",
        "/api/v1/ra/factors/totp",
        {"challenge_id": r.json["challenge_id"], "code": pyotp.TOTP(secret).at(clock())},
    )
    assert r.status == 201, r.text
    # the enrolment proved the factor: the login is complete, in a new session
    assert r.json["csrf_token"] and c.cookie(COOKIE) != enrol_only
    c.csrf = r.json["csrf_token"]
    assert (await c.call("GET", "/api/v1/ra/subscribers")).status == 200
    stale = new_client()
    stale.set_cookie(COOKIE, enrol_only)
    assert (await stale.call("GET", "/api/v1/ra/factors")).status == 401

    # the next login asks for the factor
    d = new_client()
    r = await d.officer_login(login, PASSWORD)
    assert r.json["second_factor"] == "verify"
    clock.advance(30)
    r = await d.call(
        "POST", "/api/v1/ra/session/second-factor", {"totp_code": pyotp.TOTP(secret).at(clock())}
    )
    assert r.status == 200, r.text
