"""HTTPS posture of the real gateway: with an https:// public_url every answer carries HSTS and
both session cookies are ``__Host-`` prefixed, Secure, HttpOnly, SameSite=Strict, Path=/, no
Domain; with http:// (dev) the cookies keep their plain names without Secure and no HSTS.

TLS itself is terminated in front of the gateway here (as behind a load balancer); what the
gateway decides (headers, cookie names and attributes, which cookie it reads) is checked over
real HTTP on a real socket, with the application, database and sessions of production.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.app import make_app
from gateway.config import GatewayConfig
from tests.integration.conftest import Client, FakeClock, StubSigner, register

pytestmark = pytest.mark.asyncio(loop_scope="module")

HSTS = "max-age=63072000; includeSubDomains"
# answers of every kind: health, API error, page, static file, redirect, 404, operator sub-app
PATHS = (
    "/healthz",
    "/api/v1/me",
    "/",
    "/static/portal.css",
    "/ra",
    "/no-such-page",
    "/operator/",
    "/metrics",
)


class HttpsClient(Client):
    """A browser behind the TLS terminator: it stores and sends back Secure cookies."""

    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[URL(base)])
        self.http = aiohttp.ClientSession(cookie_jar=self.jar)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def https_base(
    gateway_config: GatewayConfig, db_pool: asyncpg.Pool, clock: FakeClock, signer: StubSigner
) -> AsyncIterator[str]:
    """A second gateway on the same database, published as https://ca.example.test."""
    config = dataclasses.replace(gateway_config, public_url="https://ca.example.test")
    srv = TestServer(
        make_app(config, db_pool=db_pool, clock=clock, signer_client=signer), host="127.0.0.1"
    )
    await srv.start_server()
    try:
        yield str(srv.make_url("")).rstrip("/")
    finally:
        await srv.close()


@pytest_asyncio.fixture(loop_scope="module")
async def https_client(https_base: str) -> AsyncIterator[Any]:
    made: list[Client] = []

    def make() -> Client:
        made.append(HttpsClient(https_base))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            await c.close()


def _set_cookies(headers: Any) -> dict[str, Any]:
    """Every Set-Cookie of an answer, parsed, by name."""
    out: dict[str, Any] = {}
    for value in headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(value)
        for name, morsel in jar.items():
            out[name] = (morsel, value)
    return out


def _assert_host_cookie(headers: Any, name: str) -> str:
    cookies = _set_cookies(headers)
    assert list(cookies) == [f"__Host-{name}"], cookies
    morsel, raw = cookies[f"__Host-{name}"]
    assert morsel["secure"] and morsel["httponly"]
    assert (morsel["samesite"], morsel["path"], morsel["domain"]) == ("Strict", "/", "")
    assert "domain" not in raw.lower()
    return str(morsel.value)


async def test_https_session_cookies_are_host_prefixed_and_secure(https_client: Any) -> None:
    officer: Client = https_client()
    r = await officer.officer_login()
    assert r.status == 200, r.text
    _assert_host_cookie(r.headers, "ca_ra_session")
    slip = await register(officer)  # the officer's __Host- cookie authenticates it

    subscriber: Client = https_client()
    r = await subscriber.login(slip["account"], slip["initial_password"])
    assert r.status == 200, r.text
    token = _assert_host_cookie(r.headers, "ca_session")
    assert (await subscriber.call("GET", "/api/v1/me")).status == 200

    # In HTTPS mode only the prefixed cookie counts: the same token under the plain name (as
    # a sibling host could plant it) is no session.
    planted: Client = https_client()
    planted.set_cookie("ca_session", token)
    planted.csrf = subscriber.csrf
    assert (await planted.call("GET", "/api/v1/me")).status == 401

    r = await subscriber.call("DELETE", "/api/v1/session")
    assert r.status == 204
    morsel, _ = _set_cookies(r.headers)["__Host-ca_session"]
    assert morsel.value == "" and morsel["secure"] and morsel["path"] == "/"
    r = await officer.call("DELETE", "/api/v1/ra/session")
    assert r.status == 204 and "__Host-ca_ra_session" in _set_cookies(r.headers)


async def test_https_answers_of_every_kind_carry_hsts(https_client: Any) -> None:
    c: Client = https_client()
    for path in PATHS:
        async with c.http.get(c.base + path, allow_redirects=False) as r:
            assert r.headers.get("Strict-Transport-Security") == HSTS, (path, r.status)


async def test_https_openapi_names_the_prefixed_cookies(https_client: Any) -> None:
    doc = (await https_client().call("GET", "/api/v1/openapi.json")).json
    schemes = doc["components"]["securitySchemes"]
    names = (schemes["subscriberSession"]["name"], schemes["officerSession"]["name"])
    assert names == ("__Host-ca_session", "__Host-ca_ra_session")


async def test_http_keeps_plain_cookies_and_sends_no_hsts(new_client: Any) -> None:
    """The dev mode (http://127.0.0.1): a Secure or __Host- cookie would never come back."""
    officer: Client = new_client()
    r = await officer.officer_login()
    assert r.status == 200, r.text
    slip = await register(officer)
    subscriber: Client = new_client()
    r = await subscriber.login(slip["account"], slip["initial_password"])
    assert r.status == 200, r.text
    for headers, name in ((r.headers, "ca_session"), (None, "ca_ra_session")):
        if headers is None:
            headers = (await new_client().officer_login()).headers
        cookies = _set_cookies(headers)
        assert list(cookies) == [name], cookies
        morsel, _ = cookies[name]
        assert not morsel["secure"] and morsel["httponly"]
        assert (morsel["samesite"], morsel["path"], morsel["domain"]) == ("Strict", "/", "")
    assert (await subscriber.call("GET", "/api/v1/me")).status == 200
    for path in PATHS:
        async with subscriber.http.get(subscriber.base + path, allow_redirects=False) as resp:
            assert "Strict-Transport-Security" not in resp.headers, path
    doc = (await subscriber.call("GET", "/api/v1/openapi.json")).json
    assert doc["components"]["securitySchemes"]["subscriberSession"]["name"] == "ca_session"
