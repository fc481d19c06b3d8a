"""Health, readiness, metrics, OpenAPI, captcha switched off."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Client, StubSigner

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_health_and_readiness(new_client: Any, signer: StubSigner) -> None:
    c: Client = new_client()
    r = await c.call("GET", "/healthz")
    assert r.status == 200
    assert r.headers["X-Request-Id"]
    r = await c.call("GET", "/readyz")  # database answers, no signer does
    assert (r.status, r.json["error"]) == (503, "not_ready")
    assert "signer" in r.json["checks"] and "database" not in r.json["checks"]
    signer.healthy = True
    try:
        assert (await c.call("GET", "/readyz")).status == 200
    finally:
        signer.healthy = False


async def test_metrics(new_client: Any) -> None:
    c: Client = new_client()
    await c.login("nobody-here", "wrong-password")
    r = await c.call("GET", "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'ca_gateway_login_failures_total{kind="subscriber"}' in text
    assert "ca_gateway_account_locks_total" in text
    assert 'route="/api/v1/session"' in text and 'status="401"' in text


async def test_openapi_covers_the_contract(new_client: Any) -> None:
    r = await new_client().call("GET", "/api/v1/openapi.json")
    assert r.status == 200
    doc = r.json
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/session",
        "/api/v1/password",
        "/api/v1/me",
        "/api/v1/terms",
        "/api/v1/captcha",
        "/api/v1/ra/session",
        "/api/v1/ra/subscribers",
        "/api/v1/ra/subscribers/{id}",
        "/api/v1/ra/subscribers/{id}/password-reset",
        "/api/v1/ra/audit",
        "/api/v1/certificates",
        "/healthz",
        "/readyz",
        "/metrics",
        "/ca",
        "/ocsp",
        "/api/v1/ra/certificates/{serial}/revocation",
    ):
        assert path in doc["paths"], path


async def test_captcha_disabled(new_client: Any) -> None:
    r = await new_client().call("GET", "/api/v1/captcha")
    assert (r.status, r.json["error"]) == (404, "captcha_disabled")


async def test_request_id_is_propagated(new_client: Any) -> None:
    r = await new_client().call("GET", "/healthz", headers={"X-Request-Id": "abc-123-def"})
    assert r.headers["X-Request-Id"] == "abc-123-def"


async def test_favicon(new_client: Any) -> None:
    r = await new_client().call("GET", "/favicon.ico")
    assert r.status == 200 and r.headers["Content-Type"] == "image/x-icon"
    assert r.body[:4] == b"\x00\x00\x01\x00"  # an ICO file


async def test_captcha_audio_disabled(new_client: Any) -> None:
    r = await new_client().call("GET", "/api/v1/captcha/audio")
    assert (r.status, r.json["error"]) == (404, "captcha_disabled")
