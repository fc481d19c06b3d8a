"""Captchas: single use, short-lived, answers stored hashed in PostgreSQL.

Any gateway instance can check a challenge another one issued. A challenge is removed by the
first check, whatever the answer, so a wrong guess uses it up.

Two kinds share the table and the check: an image of letters and digits that cannot be taken
for one another (no S/5, Z/2, B/8, G/6, O/0/Q, I/1, 9/g), dark glyphs on white;
and, for people who cannot see it, spoken digits (gateway/speech.py, espeak-ng), a challenge of
its own so the audio never tells the answer of an image.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from captcha.image import ImageCaptcha
from PIL import ImageOps

from db.queries import captcha as q
from gateway import speech
from gateway.clock import Clock

# nothing that reads as another glyph: no S/5, Z/2, B/8, G/6, O/0/Q, I/1, 9/g
ALPHABET = "ACDEFHJKLMNPRTUVWXY347"
CONFUSABLE = ("S5", "Z2", "B8", "G6", "O0", "I1", "Q9")
LENGTH = 5
AUDIO_LENGTH = 6
WIDTH, HEIGHT = 240, 80  # drawn and shown at this size (the page sets the same)


def new_answer() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def new_audio_answer() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(AUDIO_LENGTH))


def _ink() -> tuple[int, int, int, int]:
    """A dark, saturated glyph colour: at least 7:1 against white whatever the draw."""
    channels = [secrets.randbelow(70) for _ in range(3)]
    channels[secrets.randbelow(3)] += secrets.randbelow(50)  # some hue, still dark
    return (*channels, 255)  # type: ignore[return-value]


@dataclass(frozen=True)
class Captcha:
    id: str
    image_png: bytes

    @property
    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.image_png).decode()


@dataclass(frozen=True)
class AudioCaptcha:
    id: str
    wav: bytes

    @property
    def data_url(self) -> str:
        return "data:audio/wav;base64," + base64.b64encode(self.wav).decode()


class CaptchaService:
    def __init__(self, *, ttl_seconds: int, clock: Clock, pepper: bytes | None) -> None:
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._pepper = pepper or b""
        self._image = ImageCaptcha(width=WIDTH, height=HEIGHT, font_sizes=(50, 56, 60))

    def _hash(self, captcha_id: str, answer: str) -> bytes:
        message = f"{captcha_id}:{answer.strip().upper()}".encode()
        if self._pepper:
            return hmac.new(self._pepper, message, hashlib.sha256).digest()
        return hashlib.sha256(message).digest()

    async def create(self, conn: asyncpg.Connection | asyncpg.Pool) -> Captcha:
        answer = new_answer()
        captcha_id = secrets.token_urlsafe(24)
        png = await asyncio.to_thread(self._png, answer)
        await self._store(conn, captcha_id, answer)
        return Captcha(captcha_id, png)

    def _png(self, answer: str) -> bytes:
        # the library pastes each glyph through a mask made from the glyph's own brightness, so
        # dark ink would come out faint: it draws light ink on black, and the inversion gives
        # dark ink on white
        r, g, b, _ = _ink()
        drawn = self._image.generate_image(
            answer, bg_color=(0, 0, 0), fg_color=(255 - r, 255 - g, 255 - b, 255)
        )
        image = ImageOps.invert(drawn.convert("RGB"))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    async def create_audio(
        self, conn: asyncpg.Connection | asyncpg.Pool, lang: str
    ) -> AudioCaptcha:
        """Spoken digits; raises speech.SpeechUnavailable when espeak-ng cannot speak."""
        answer = new_audio_answer()
        captcha_id = secrets.token_urlsafe(24)
        wav = await asyncio.to_thread(speech.digits_wav, answer, lang)
        await self._store(conn, captcha_id, answer)
        return AudioCaptcha(captcha_id, wav)

    async def _store(
        self, conn: asyncpg.Connection | asyncpg.Pool, captcha_id: str, answer: str
    ) -> None:
        now = self._clock()
        await q.insert(
            conn,
            id=captcha_id,
            answer_hash=self._hash(captcha_id, answer),  # type: ignore[arg-type]
            now=now,
            expires_at=now + self._ttl,
        )

    async def check(
        self, conn: asyncpg.Connection | asyncpg.Pool, captcha_id: str, answer: str
    ) -> bool:
        """Consume the challenge; True only for a known, unexpired one with the right answer."""
        if not captcha_id or len(captcha_id) > 64:
            return False
        challenge = await q.take(conn, captcha_id)  # type: ignore[arg-type]
        if challenge is None or challenge.expires_at <= self._clock():
            return False
        return hmac.compare_digest(challenge.answer_hash, self._hash(captcha_id, answer))
