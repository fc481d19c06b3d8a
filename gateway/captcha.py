"""Image captchas: single use, short-lived, answers stored hashed in PostgreSQL.

Any gateway instance can check a challenge another one issued. A challenge is removed by the
first check, whatever the answer, so a wrong guess uses it up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from captcha.image import ImageCaptcha

from db.queries import captcha as q
from gateway.keys import Clock

ALPHABET = "ABCDEFHJKLMNPRSTUVWXYZ2345678"  # no 0/O, 1/I, G/6, Q, 9/g
LENGTH = 5


def new_answer() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


@dataclass(frozen=True)
class Captcha:
    id: str
    image_png: bytes

    @property
    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.image_png).decode()


class CaptchaService:
    def __init__(self, *, ttl_seconds: int, clock: Clock, pepper: bytes | None) -> None:
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._pepper = pepper or b""
        self._image = ImageCaptcha(width=180, height=64)

    def _hash(self, captcha_id: str, answer: str) -> bytes:
        message = f"{captcha_id}:{answer.strip().upper()}".encode()
        if self._pepper:
            return hmac.new(self._pepper, message, hashlib.sha256).digest()
        return hashlib.sha256(message).digest()

    async def create(self, conn: asyncpg.Connection | asyncpg.Pool) -> Captcha:
        answer = new_answer()
        captcha_id = secrets.token_urlsafe(24)
        png = await asyncio.to_thread(lambda: self._image.generate(answer, "png").getvalue())
        now = self._clock()
        await q.insert(conn, id=captcha_id, answer_hash=self._hash(captcha_id, answer), now=now,
                       expires_at=now + self._ttl)
        return Captcha(captcha_id, png)

    async def check(self, conn: asyncpg.Connection | asyncpg.Pool, captcha_id: str,
                    answer: str) -> bool:
        """Consume the challenge; True only for a known, unexpired one with the right answer."""
        if not captcha_id or len(captcha_id) > 64:
            return False
        challenge = await q.take(conn, captcha_id)  # type: ignore[arg-type]
        if challenge is None or challenge.expires_at <= self._clock():
            return False
        return hmac.compare_digest(challenge.answer_hash, self._hash(captcha_id, answer))
