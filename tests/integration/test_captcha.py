"""Captcha on: single use (a wrong answer uses it up), expires, checked before credentials."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway import captcha
from tests.integration.conftest import Client, FakeClock, register

pytestmark = pytest.mark.asyncio(loop_scope="module")
GATEWAY_OVERRIDES = {"captcha": True, "captcha_ttl": 180}


async def _challenge(c: Client, monkeypatch: pytest.MonkeyPatch, answer: str = "K7XRT") -> str:
    monkeypatch.setattr(captcha, "new_answer", lambda: answer)
    r = await c.call("GET", "/api/v1/captcha")
    assert r.status == 200
    assert r.json["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(r.json["image"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return r.json["captcha_id"]


async def test_login_with_captcha(
    officer: Client, new_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slip = await register(officer)
    c = new_client()
    cid = await _challenge(c, monkeypatch)
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="k7xrt"
    )  # case-insensitive
    assert r.status == 200
    # used once: a second use is refused, even with the right answer
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="K7XRT"
    )
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")


async def test_wrong_answer_uses_it_up(
    officer: Client, new_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slip = await register(officer)
    c = new_client()
    cid = await _challenge(c, monkeypatch)
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="WRONG"
    )
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="K7XRT"
    )
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")


async def test_expired_and_missing(
    officer: Client, new_client: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slip = await register(officer)
    c = new_client()
    cid = await _challenge(c, monkeypatch)
    clock.advance(181)
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="K7XRT"
    )
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")
    r = await c.login(slip["account"], slip["initial_password"])
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")
    r = await c.login(
        slip["account"],
        slip["initial_password"],
        captcha_id="made-up-id-12345",
        captcha_answer="K7XRT",
    )
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")


async def test_captcha_failures_do_not_count_toward_the_lock(
    officer: Client, new_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slip = await register(officer)
    c = new_client()
    for _ in range(4):
        await c.login(
            slip["account"], "wrong-pw", captcha_id="nope-nope-nope-nope", captcha_answer="x"
        )
    cid = await _challenge(c, monkeypatch)
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="K7XRT"
    )
    assert r.status == 200


async def test_audio_captcha(
    officer: Client, new_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audio alternative: spoken digits (espeak-ng), its own single-use challenge."""
    import io
    import wave

    from gateway import speech

    slip = await register(officer)
    c = new_client()
    monkeypatch.setattr(captcha, "new_audio_answer", lambda: "347902")
    r = await c.call("GET", "/api/v1/captcha/audio?lang=zh-TW")
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json["audio"].startswith("data:audio/wav;base64,")
    wav = base64.b64decode(r.json["audio"].split(",", 1)[1])
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnframes() / w.getframerate() > 3  # six digits, slowly
    # what was spoken is these digits in Mandarin (espeak-ng is deterministic)
    assert wav == speech.digits_wav("347902", "zh-TW") != speech.digits_wav("347902", "en")
    assert wav != speech.digits_wav("347903", "zh-TW")
    cid = r.json["captcha_id"]
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="347902"
    )
    assert r.status == 200
    r = await c.login(
        slip["account"], slip["initial_password"], captcha_id=cid, captcha_answer="347902"
    )
    assert (r.status, r.json["error"]) == (400, "invalid_captcha")  # single use
    r = await c.call("GET", "/api/v1/captcha/audio?lang=fr")
    assert (r.status, r.json["error"], r.json["field"]) == (400, "invalid_field", "lang")
    # english digits too
    r = await c.call("GET", "/api/v1/captcha/audio?lang=en")
    assert r.status == 200 and r.json["captcha_id"] != cid
