"""Captcha on: single use (a wrong answer uses it up), expires, checked before credentials."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway import captcha
from tests.integration.conftest import Client, FakeClock, register

pytestmark = pytest.mark.asyncio(loop_scope="module")
GATEWAY_OVERRIDES = {"captcha": True, "captcha_ttl": 180}


async def _challenge(c: Client, monkeypatch: pytest.MonkeyPatch, answer: str = "K7XRT"
                     ) -> str:
    monkeypatch.setattr(captcha, "new_answer", lambda: answer)
    r = await c.call("GET", "/api/v1/captcha")
    assert r.status == 200
    assert r.json["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(r.json["image"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return r.json["captcha_id"]


async def test_login_with_captcha(officer: Client, new_client: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    slip = await register(officer)
    c = new_client()
    cid = await _challenge(c, monkeypatch)
    r = await c.login(slip["account"], slip["initial_password"], captcha_id=cid,
                      captcha_answer="k7xrt")  # case-insensitive
    assert r.status == 200
    # used once: a second use is refused, even with the right answer
    r = await c.login(slip["account"], slip["initial_password"], captcha_id=cid,
                      captcha_answer="K7XRT")
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")


async def test_wrong_answer_uses_it_up(officer: Client, new_client: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    slip = await register(officer)
    c = new_client()
    cid = await _challenge(c, monkeypatch)
    r = await c.login(slip["account"], slip["initial_password"], captcha_id=cid,
                      captcha_answer="WRONG")
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")
    r = await c.login(slip["account"], slip["initial_password"], captcha_id=cid,
                      captcha_answer="K7XRT")
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")


async def test_expired_and_missing(officer: Client, new_client: Any, clock: FakeClock,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    slip = await register(officer)
    c = new_client()
    cid = await _challenge(c, monkeypatch)
    clock.advance(181)
    r = await c.login(slip["account"], slip["initial_password"], captcha_id=cid,
                      captcha_answer="K7XRT")
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")
    r = await c.login(slip["account"], slip["initial_password"])
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")
    r = await c.login(slip["account"], slip["initial_password"], captcha_id="made-up-id-12345",
                      captcha_answer="K7XRT")
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")


async def test_captcha_failures_do_not_count_toward_the_lock(
    officer: Client, new_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slip = await register(officer)
    c = new_client()
    for _ in range(4):
        await c.login(slip["account"], "wrong-pw", captcha_id="nope-nope-nope-nope",
                      captcha_answer="x")
    cid = await _challenge(c, monkeypatch)
    r = await c.login(slip["account"], slip["initial_password"], captcha_id=cid,
                      captcha_answer="K7XRT")
    assert r.status == 200
