"""RA officers: session, registration and the slip, search, view, reset; ca-admin verbs."""

from __future__ import annotations

import asyncio
import io
import re
import sys
from typing import Any

import pytest

from admin import cli
from tests.integration.conftest import Client, register, subscriber_body

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _admin(
    monkeypatch: pytest.MonkeyPatch, database_url: str, *argv: str, stdin: str = ""
) -> int:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return await asyncio.to_thread(cli.main, list(argv))


async def test_register_returns_a_slip(officer: Client) -> None:
    r = await officer.call("POST", "/api/v1/ra/subscribers", subscriber_body())
    assert r.status == 201
    slip = r.json
    assert set(slip) == {"subscriber_id", "account", "initial_password"}
    assert re.fullmatch(r"[a-z][a-z0-9]{5,31}", slip["account"])
    assert re.fullmatch(r"[A-Za-z2-9]{10,12}", slip["initial_password"])
    assert not set(slip["initial_password"]) & set("0O1lI")


async def test_register_defaults_and_view(officer: Client) -> None:
    body = subscriber_body()
    del body["phone"], body["address"]
    body["subject"] = {"cn": body["subject"]["cn"]}
    body["usages"] = ["signing"]
    r = await officer.call("POST", "/api/v1/ra/subscribers", body)
    assert r.status == 201
    slip = r.json
    r = await officer.call("GET", f"/api/v1/ra/subscribers/{slip['subscriber_id']}")
    assert r.status == 200
    view = r.json
    assert view["subject"] == {"cn": body["subject"]["cn"], "ou": [], "o": "", "c": "TW"}
    assert view["usages"] == ["signing"]
    assert (view["phone"], view["address"], view["certificates"]) == ("", "", [])
    assert (view["locked"], view["failed_attempts"], view["must_change_password"]) == (
        False,
        0,
        True,
    )
    assert view["account"] == slip["account"]


async def test_duplicates_refused(officer: Client) -> None:
    first = subscriber_body()
    await register(officer, **first)
    again = subscriber_body(id_number=first["id_number"])
    r = await officer.call("POST", "/api/v1/ra/subscribers", again)
    assert (r.status, r.json["error"]) == (409, "duplicate")
    again = subscriber_body(subject={"cn": first["subject"]["cn"]})
    r = await officer.call("POST", "/api/v1/ra/subscribers", again)
    assert (r.status, r.json["error"]) == (409, "duplicate")


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not-an-address"},
        {"usages": []},
        {"usages": ["authentication"]},
        {"usages": "signing"},
        {"subject": {"o": "no cn"}},
        {"subject": {"cn": "X", "c": "TWN"}},
        {"subject": {"cn": "X", "ou": [1]}},
        {"name": ""},
        {"name": 42},
        {"id_number": "A\u0000B"},
        {"id_number": None},
    ],
)
async def test_invalid_fields(officer: Client, change: dict[str, Any]) -> None:
    r = await officer.call("POST", "/api/v1/ra/subscribers", subscriber_body(**change))
    assert (r.status, r.json["error"]) == (400, "invalid_field"), change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id_number": "hello"}, "id_number"),
        ({"id_number": "A123456788"}, "id_number"),  # check digit wrong
        ({"id_number": "C123456789x"}, "id_number"),
        ({"id_number": "22099132"}, "id_number"),  # company number, check wrong
        ({"subject": {"cn": "X-63-Y", "c": "XX"}}, "subject.c"),
        ({"email": "wang@localhost"}, "email"),
        ({"email": "a..b@example.tw"}, "email"),
    ],
)
async def test_impossible_identities_refused(
    officer: Client, change: dict[str, Any], field: str
) -> None:
    r = await officer.call("POST", "/api/v1/ra/subscribers", subscriber_body(**change))
    assert (r.status, r.json["error"], r.json.get("field")) == (400, "invalid_field", field)


@pytest.mark.parametrize(
    "id_number", ["a123456789", "22099131", "10000073", "A800000014", "AA00000009"]
)
async def test_real_identities_accepted(officer: Client, id_number: str) -> None:
    body = subscriber_body(id_number=id_number, subject={"cn": f"{id_number}-63-X", "c": "jp"})
    slip = await register(officer, **body)
    r = await officer.call("GET", f"/api/v1/ra/subscribers/{slip['subscriber_id']}")
    # stored in canonical case
    assert (r.json["id_number"], r.json["subject"]["c"]) == (id_number.upper(), "JP")


async def test_search(officer: Client) -> None:
    body = subscriber_body(name="Chen Yi-Ru", email="yiru.chen@Example.TW")
    slip = await register(officer, **body)
    for q in (
        body["id_number"].lower(),
        slip["account"].upper(),
        "yi-ru",
        "YIRU.CHEN",
        body["subject"]["cn"][3:9],
    ):
        r = await officer.call("GET", f"/api/v1/ra/subscribers?q={q}")
        assert r.status == 200
        assert slip["account"] in [s["account"] for s in r.json["subscribers"]], q
    r = await officer.call("GET", "/api/v1/ra/subscribers?q=%25")  # no wildcard injection
    assert r.json["subscribers"] == []


async def test_view_unknown(officer: Client) -> None:
    for sid in ("999999", "abc", "-1", "1e3"):
        r = await officer.call("GET", f"/api/v1/ra/subscribers/{sid}")
        assert (r.status, r.json["error"]) == (404, "not_found"), sid
    r = await officer.call("POST", "/api/v1/ra/subscribers/999999/password-reset")
    assert (r.status, r.json["error"]) == (404, "not_found")


async def test_printable_slip(officer: Client) -> None:
    body = subscriber_body(name="林<script>美")
    r = await officer.call("POST", "/api/v1/ra/subscribers", body, headers={"Accept": "text/html"})
    assert r.status == 201
    assert r.headers["Content-Type"].startswith("text/html")
    page = r.text
    assert 'lang="zh-TW"' in page and "初始密碼" in page
    assert "<script>美" not in page and "&lt;script&gt;" in page
    account = re.search(r'class="secret">([a-z0-9]+)<', page).group(1)
    found = await officer.call("GET", f"/api/v1/ra/subscribers?q={account}")
    sid = found.json["subscribers"][0]["subscriber_id"]
    r = await officer.call(
        "POST",
        f"/api/v1/ra/subscribers/{sid}/password-reset",
        headers={"Accept": "text/html,application/xhtml+xml"},
    )
    assert r.status == 200 and "密碼重設單" in r.text and account in r.text


async def test_ra_requires_officer_session(new_client: Any) -> None:
    c = new_client()
    for method, path in (
        ("GET", "/api/v1/ra/subscribers"),
        ("GET", "/api/v1/ra/audit"),
        ("POST", "/api/v1/ra/subscribers"),
        ("GET", "/api/v1/ra/subscribers/1"),
    ):
        r = await c.call(method, path, subscriber_body() if method == "POST" else None)
        assert (r.status, r.json["error"]) == (401, "unauthenticated"), path


async def test_officer_csrf(officer: Client) -> None:
    r = await officer.call("POST", "/api/v1/ra/subscribers", subscriber_body(), csrf=False)
    assert (r.status, r.json["error"]) == (403, "csrf_failed")


async def test_officer_lock_and_ca_admin(
    new_client: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc = await _admin(
        monkeypatch, database_url, "create-officer", "ra-second", stdin="second-officer-pw\n"
    )
    assert rc == 0
    assert (
        await _admin(
            monkeypatch, database_url, "create-officer", "ra-second", stdin="second-officer-pw\n"
        )
        == 1
    )  # exists
    assert (
        await _admin(monkeypatch, database_url, "create-officer", "ra-third", stdin="short\n") == 1
    )  # too short
    c = new_client()
    assert (await c.officer_login("ra-second", "second-officer-pw")).status == 200
    for attempt in range(1, 7):
        r = await c.officer_login("ra-second", "wrong")
        assert r.status == (401 if attempt < 5 else 423), attempt
    assert r.json["error"] == "account_locked"
    assert (await c.officer_login("ra-second", "second-officer-pw")).status == 423
    # the lock ended the open officer session
    assert (await c.call("GET", "/api/v1/ra/subscribers")).status == 401
    assert await _admin(monkeypatch, database_url, "unlock-officer", "ra-second") == 0
    assert (await c.officer_login("ra-second", "second-officer-pw")).status == 200
    assert await _admin(monkeypatch, database_url, "unlock-officer", "nobody") == 1
    assert await _admin(monkeypatch, database_url, "migrate") == 0


async def test_audit_endpoint(officer: Client) -> None:
    slip = await register(officer)
    r = await officer.call("GET", "/api/v1/ra/audit?limit=1000")
    events = r.json["events"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    reg = [
        e
        for e in events
        if e["action"] == "subscriber_registered" and e["target"] == slip["account"]
    ]
    assert len(reg) == 1 and reg[0]["actor"] == "ra-test"
    assert isinstance(reg[0]["details"], dict) and reg[0]["at"].endswith("Z")
    r = await officer.call("GET", f"/api/v1/ra/audit?after_id={ids[-2]}&limit=5")
    assert [e["id"] for e in r.json["events"]] == ids[-1:]
    r = await officer.call("GET", "/api/v1/ra/audit?limit=2")
    assert [e["id"] for e in r.json["events"]] == ids[:2]
    for bad in ("limit=0", "limit=1001", "limit=x", "after_id=-1"):
        r = await officer.call("GET", f"/api/v1/ra/audit?{bad}")
        assert (r.status, r.json["error"]) == (400, "invalid_field"), bad


async def test_audit_newest_first(officer: Client) -> None:
    for _ in range(3):
        await register(officer)
    r = await officer.call("GET", "/api/v1/ra/audit?limit=1000")
    ids = [e["id"] for e in r.json["events"]]
    r = await officer.call("GET", "/api/v1/ra/audit?order=desc&limit=2")
    newest = [e["id"] for e in r.json["events"]]
    assert newest == sorted(ids, reverse=True)[:2]
    r = await officer.call("GET", f"/api/v1/ra/audit?order=desc&limit=1000&before_id={newest[-1]}")
    assert [e["id"] for e in r.json["events"]] == sorted(ids, reverse=True)[2:]
    r = await officer.call("GET", "/api/v1/ra/audit?order=sideways")
    assert (r.status, r.json["error"], r.json["field"]) == (400, "invalid_field", "order")
