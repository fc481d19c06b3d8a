"""Garbage to every endpoint: always a 4xx with a JSON error code, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.integration.conftest import Client, active_subscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")

GARBAGE: list[tuple[str, bytes]] = [
    ("not json", b"{this is not json"),
    ("empty", b""),
    ("array", b"[1, 2, 3]"),
    ("scalar", b"42"),
    ("null", b"null"),
    ("nul bytes", b'{"account": "a\\u0000b", "password": "x\\u0000", "login": "\\u0000"}'),
    (
        "wrong types",
        b'{"account": 1, "password": [], "login": {}, "old_password": 5, '
        b'"new_password": null, "id_number": true, "subject": "x", '
        b'"usages": {"a": 1}, "captcha_id": 3}',
    ),
    ("deep nesting", b"[" * 5000 + b"]" * 5000),
    ("bad utf-8", b'{"account": "\xff\xfe"}'),
    ("lone surrogate", b'{"account": "\\ud800", "password": "\\udfff"}'),
    ("huge number", b'{"account": 1e999999, "password": 123456789012345678901234567890}'),
    ("long strings", b'{"account": "' + b"a" * 10000 + b'", "password": "' + b"b" * 10000 + b'"}'),
]


def _routes(server: TestServer) -> list[tuple[str, str]]:
    out = []
    for route in server.app.router.routes():
        if route.method in ("HEAD", "*") or route.resource.canonical == "/readyz":
            continue
        path = route.resource.canonical.replace("{id}", "1")
        out.append((route.method, path))
    return out


async def test_garbage_to_every_endpoint(
    server: TestServer, officer: Client, new_client: Any
) -> None:
    subscriber, _, _ = await active_subscriber(new_client, officer)
    anonymous = new_client()
    routes = _routes(server)
    assert len(routes) >= 14
    for method, path in routes:
        for who in (anonymous, subscriber, officer):
            for label, raw in GARBAGE:
                for ctype in ("application/json", "text/plain"):
                    r = await who.call(method, path, raw=raw, headers={"Content-Type": ctype})
                    assert r.status < 500, (method, path, label, r.status, r.body[:200])
                    if r.status >= 400:
                        assert isinstance(r.json, dict) and r.json["error"], (method, path)
            r = await who.call(method, path + "?q=%00&after_id=%ff&limit=99999999999999999999")
            assert r.status < 500, (method, path, "query")


@pytest.mark.parametrize(
    "path", ["/api/v1/session", "/api/v1/ra/session", "/api/v1/password", "/api/v1/ra/subscribers"]
)
async def test_oversized_body(new_client: Any, path: str) -> None:
    c: Client = new_client()
    r = await c.call(
        "POST",
        path,
        raw=b'{"a": "' + b"x" * (70 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    if path in ("/api/v1/session", "/api/v1/ra/session"):
        assert (r.status, r.json["error"]) == (413, "too_large")
    else:  # the session is checked first
        assert r.status in (401, 413) and r.json["error"] in ("unauthenticated", "too_large")


async def test_oversized_body_with_session(officer: Client) -> None:
    r = await officer.call(
        "POST",
        "/api/v1/ra/subscribers",
        raw=b"[" + b"1," * 40000 + b"1]",
        headers={"Content-Type": "application/json"},
    )
    assert (r.status, r.json["error"]) == (413, "too_large")


async def test_malformed_json(new_client: Any) -> None:
    r = await new_client().call(
        "POST", "/api/v1/session", raw=b'{"account": ', headers={"Content-Type": "application/json"}
    )
    assert (r.status, r.json["error"]) == (400, "bad_request")
    r = await new_client().call("POST", "/api/v1/session", {"account": "x"})
    assert (r.status, r.json["error"]) == (400, "invalid_field")
    r = await new_client().call("POST", "/api/v1/session", {"account": "x", "password": 5})
    assert (r.status, r.json["error"]) == (400, "invalid_field")


async def test_unknown_route_and_wrong_method(new_client: Any) -> None:
    c: Client = new_client()
    r = await c.call("GET", "/api/v1/nothing-here")
    assert (r.status, r.json["error"]) == (404, "not_found")
    assert r.headers["Content-Type"].startswith("application/json")
    r = await c.call("PUT", "/api/v1/session")
    assert (r.status, r.json["error"]) == (405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]
    r = await c.call("GET", "/api/v1/ra/certificates/abc/revocation")
    assert r.status in (404, 405) and r.json["error"]
