"""Server-side sessions: random ids stored hashed, idle and absolute timeouts, CSRF tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from db.queries import sessions as q
from db.queries.sessions import Kind


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def csrf_for(token: str) -> str:
    """The CSRF token of the session whose cookie is ``token``.

    Derived, not drawn, so that any tab of the browser holding the cookie can ask for it again
    (``GET /api/v1/session``) while the database keeps only hashes: the session id is stored as
    SHA-256(token), and this is a different, domain-separated function of the same 256-bit
    secret, so neither the database nor another site (which cannot read the answer of a
    same-origin GET) learns it without the cookie.
    """
    mac = hmac.new(b"ca-portal csrf v1", token.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie, never stored
    csrf_token: str  # csrf_for(token); stored hashed


@dataclass(frozen=True)
class ActiveSession:
    id_hash: bytes
    kind: Kind
    account_id: int | None
    officer_id: int | None
    csrf_hash: bytes

    def csrf_ok(self, header: str | None) -> bool:
        if not header or len(header) > 128:
            return False
        return hmac.compare_digest(self.csrf_hash, digest(header))


# ``last_seen_at`` is written at most this often per session (not on every request); the idle
# timeout therefore counts from a moment up to this much before the last request.
TOUCH_INTERVAL = timedelta(seconds=30)


class SessionStore:
    def __init__(self, *, idle_seconds: int, absolute_seconds: int) -> None:
        self.idle = timedelta(seconds=idle_seconds)
        self.absolute = timedelta(seconds=absolute_seconds)
        self.touch_after = min(TOUCH_INTERVAL, self.idle / 10)

    async def create(
        self,
        conn: asyncpg.Connection,
        *,
        kind: Kind,
        now: datetime,
        account_id: int | None = None,
        officer_id: int | None = None,
        replaces: str | None = None,
    ) -> NewSession:
        """A fresh id on every login; the session the client came with (if any) ends."""
        if replaces:
            await q.delete(conn, digest(replaces))
        token = secrets.token_urlsafe(32)
        new = NewSession(token, csrf_for(token))
        await q.insert(
            conn,
            id_hash=digest(new.token),
            kind=kind,
            account_id=account_id,
            officer_id=officer_id,
            csrf_hash=digest(new.csrf_token),
            now=now,
        )
        return new

    @staticmethod
    def key(token: str | None, kind: Kind) -> tuple[bytes, Kind] | None:
        """What a session is looked up by; None for a token no session can have."""
        if not token or len(token) > 128:
            return None
        return digest(token), kind

    async def authenticate_many(
        self,
        conn: asyncpg.Connection,
        keys: list[tuple[bytes, Kind]],
        now: datetime,
    ) -> dict[tuple[bytes, str], tuple[ActiveSession, asyncpg.Record]]:
        """The live sessions among ``keys`` with their account/subscriber (or officer) rows, in
        one statement; each record carries the columns of
        ``db.queries.sessions.authenticate_many``. Dead or unknown sessions are absent."""
        rows = await q.authenticate_many(
            conn,
            keys,
            now=now,
            idle=self.idle,
            absolute=self.absolute,
            touch_after=self.touch_after,
        )
        return {
            key: (
                ActiveSession(
                    key[0],
                    row["kind"],
                    row["account_id"],
                    row["officer_id"],
                    bytes(row["csrf_hash"]),
                ),
                row,
            )
            for key, row in rows.items()
            if row["live"]
        }

    async def end(self, conn: asyncpg.Connection | asyncpg.Pool, id_hash: bytes) -> None:
        await q.delete(conn, id_hash)  # type: ignore[arg-type]

    async def purge_expired(self, conn: asyncpg.Connection | asyncpg.Pool, now: datetime) -> int:
        return await q.delete_expired(
            conn,
            idle_before=now - self.idle,
            created_before=now - self.absolute,  # type: ignore[arg-type]
        )
