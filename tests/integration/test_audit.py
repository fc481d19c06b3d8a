"""The audit log: every security action writes an event; the hash chain verifies; tampering,
removal and forks are detected."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from typing import Any

import asyncpg
import pytest

from admin import cli
from db import audit
from db.pool import connect
from tests.integration.conftest import Client, active_subscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _verify_cli(monkeypatch: pytest.MonkeyPatch, database_url: str) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    rc = await asyncio.to_thread(cli.main, ["audit", "verify"])
    monkeypatch.undo()
    return rc, out.getvalue()


async def test_actions_are_audited(officer: Client, new_client: Any, db_pool: asyncpg.Pool) -> None:
    bad = new_client()
    assert (await bad.officer_login("ra-test", "wrong")).status == 401
    _, slip, pw = await active_subscriber(new_client, officer)
    for _ in range(3):
        await new_client().login(slip["account"], "wrong-password")
    await new_client().login("nosuchaccount", "whatever")
    view = await officer.call("GET", f"/api/v1/ra/subscribers?q={slip['account']}")
    sid = view.json["subscribers"][0]["subscriber_id"]
    await officer.call("POST", f"/api/v1/ra/subscribers/{sid}/password-reset")

    async with db_pool.acquire() as conn:
        events = await audit.list_events(conn, after_id=0, limit=1000)
    mine = [(e.actor, e.action) for e in events if e.target == slip["account"]]
    assert mine == [
        ("ra-test", "subscriber_registered"),
        (slip["account"], "login_succeeded"),
        (slip["account"], "password_changed"),
        ("anonymous", "login_failed"),
        ("anonymous", "login_failed"),
        ("anonymous", "login_failed"),
        (slip["account"], "account_locked"),
        ("ra-test", "password_reset"),
    ]
    actions = {e.action for e in events}
    assert {"officer_login_failed", "officer_login_succeeded"} <= actions
    unknown = [e for e in events if e.target == "nosuchaccount"]
    assert unknown[0].details["reason"] == "unknown_account"
    dumped = str([e.details for e in events])
    assert pw not in dumped and slip["initial_password"] not in dumped


async def test_concurrent_appends_keep_one_chain(db_pool: asyncpg.Pool) -> None:
    async def one(i: int) -> None:
        async with db_pool.acquire() as conn, conn.transaction():
            await audit.append(
                conn,
                actor="test",
                action="concurrency",
                target=str(i),
                details={"i": i, "text": "中文 ✓"},
            )

    await asyncio.gather(*(one(i) for i in range(40)))
    async with db_pool.acquire() as conn:
        result = await audit.verify(conn)
    assert result.ok and result.checked >= 40


async def test_append_only(owner_url: str) -> None:
    """Even the owner (who may DML everything) meets the trigger; the gateway's role has no
    UPDATE or DELETE at all (tests/integration/test_db_roles.py)."""
    conn = await connect(owner_url)
    try:
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("UPDATE audit_events SET actor = 'x' WHERE id = 1")
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("DELETE FROM audit_events WHERE id = 1")
    finally:
        await conn.close()


async def test_chain_verifies_and_tampering_is_found(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out = await _verify_cli(monkeypatch, database_url)
    assert rc == 0 and "ok" in out

    conn = await connect(database_url)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(conn.close)
        # a superuser can switch the trigger off; the chain still shows the edit
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        try:
            await conn.execute(
                """UPDATE audit_events SET details = details || '{"reason":"edited"}'
                   WHERE id = 3"""
            )
            result = await audit.verify(conn)
            assert (result.ok, result.first_broken_id) == (False, 3)
            rc, out = await _verify_cli(monkeypatch, database_url)
            assert rc == 1 and "event 3" in out

            # removing a row (and re-linking would need every later hash) is found too
            await conn.execute("DELETE FROM audit_events WHERE id = 2")
            result = await audit.verify(conn)
            assert (result.ok, result.first_broken_id) == (False, 3)
        finally:
            await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")


async def test_lock_of_an_unknown_name_is_audited_as_anonymous(
    new_client: Any, db_pool: asyncpg.Pool
) -> None:
    """API.md: the actor is the account or anonymous; an unknown name locks like an account."""
    for _ in range(3):
        await new_client().login("no-such-person", "whatever")
    async with db_pool.acquire() as conn:
        events = await audit.list_events(conn, after_id=0, limit=1000)
    locks = [
        (e.actor, e.action)
        for e in events
        if e.target == "no-such-person" and e.action == "account_locked"
    ]
    assert locks == [("anonymous", "account_locked")]
