"""RA officers' second factors (WebAuthn credentials, TOTP secrets), their single-use
challenges, and the second-factor state of officer sessions (migration 011)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

FactorKind = Literal["webauthn", "totp"]
Purpose = Literal["webauthn_enrol", "webauthn_login", "totp_enrol"]
SessionState = Literal["verify", "enrol"] | None


@dataclass(frozen=True)
class Factor:
    id: int
    officer_id: int
    kind: FactorKind
    name: str
    credential_id: bytes | None
    public_key: bytes | None
    sign_count: int
    totp_secret: str | None
    totp_last_step: int | None
    created_at: datetime
    last_used_at: datetime | None


def _factor(r: asyncpg.Record) -> Factor:
    return Factor(
        r["id"],
        r["officer_id"],
        r["kind"],
        r["name"],
        bytes(r["credential_id"]) if r["credential_id"] is not None else None,
        bytes(r["public_key"]) if r["public_key"] is not None else None,
        r["sign_count"],
        r["totp_secret"],
        r["totp_last_step"],
        r["created_at"],
        r["last_used_at"],
    )


async def for_officer(
    conn: asyncpg.Connection,
    officer_id: int,
    *,
    kind: FactorKind | None = None,
    for_update: bool = False,
) -> list[Factor]:
    sql = (
        "SELECT * FROM officer_factors WHERE officer_id = $1"
        " AND ($2::text IS NULL OR kind = $2) ORDER BY id"
    )
    rows = await conn.fetch(sql + (" FOR UPDATE" if for_update else ""), officer_id, kind)
    return [_factor(r) for r in rows]


async def by_credential(
    conn: asyncpg.Connection, officer_id: int, credential_id: bytes
) -> Factor | None:
    """The officer's WebAuthn factor with this credential id, locked for the counter update."""
    r = await conn.fetchrow(
        "SELECT * FROM officer_factors WHERE officer_id = $1 AND credential_id = $2 FOR UPDATE",
        officer_id,
        credential_id,
    )
    return _factor(r) if r else None


async def insert_webauthn(
    conn: asyncpg.Connection,
    *,
    officer_id: int,
    name: str,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    now: datetime,
) -> Factor:
    r = await conn.fetchrow(
        """INSERT INTO officer_factors (officer_id, kind, name, credential_id, public_key,
               sign_count, created_at) VALUES ($1, 'webauthn', $2, $3, $4, $5, $6)
           RETURNING *""",
        officer_id,
        name,
        credential_id,
        public_key,
        sign_count,
        now,
    )
    return _factor(r)


async def insert_totp(
    conn: asyncpg.Connection, *, officer_id: int, name: str, secret: str, step: int, now: datetime
) -> Factor:
    """A TOTP factor whose enrolment code (of time step ``step``) counts as used."""
    r = await conn.fetchrow(
        """INSERT INTO officer_factors (officer_id, kind, name, totp_secret, totp_last_step,
               created_at) VALUES ($1, 'totp', $2, $3, $4, $5) RETURNING *""",
        officer_id,
        name,
        secret,
        step,
        now,
    )
    return _factor(r)


async def used_webauthn(
    conn: asyncpg.Connection, factor_id: int, *, old_count: int, new_count: int, now: datetime
) -> bool:
    """Store the new signature counter; False when another login moved it meanwhile."""
    status = await conn.execute(
        """UPDATE officer_factors SET sign_count = $3, last_used_at = $4
           WHERE id = $1 AND sign_count = $2""",
        factor_id,
        old_count,
        new_count,
        now,
    )
    return status.endswith(" 1")


async def used_totp(conn: asyncpg.Connection, factor_id: int, *, step: int, now: datetime) -> bool:
    """Mark time step ``step`` used; False when it (or a later one) was used already."""
    status = await conn.execute(
        """UPDATE officer_factors SET totp_last_step = $2, last_used_at = $3
           WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)""",
        factor_id,
        step,
        now,
    )
    return status.endswith(" 1")


async def count_for_officer(conn: asyncpg.Connection, officer_id: int) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM officer_factors WHERE officer_id = $1", officer_id
    )


async def delete_for_officer(
    conn: asyncpg.Connection, officer_id: int, factor_id: int | None = None
) -> list[Factor]:
    """Remove the officer's factors (or the one ``factor_id``); returns what was removed."""
    rows = await conn.fetch(
        """DELETE FROM officer_factors WHERE officer_id = $1 AND ($2::bigint IS NULL OR id = $2)
           RETURNING *""",
        officer_id,
        factor_id,
    )
    return [_factor(r) for r in rows]


async def record_failure(
    conn: asyncpg.Connection, officer_id: int, *, lock_at: int, now: datetime
) -> tuple[int, bool]:
    """Count a failed second-factor attempt; the ``lock_at``-th locks the officer and starts
    the count again. Returns (failures counted, locked_now)."""
    r = await conn.fetchrow(
        """UPDATE ra_officers SET
               second_factor_failures = CASE WHEN second_factor_failures + 1 >= $2 THEN 0
                                             ELSE second_factor_failures + 1 END,
               locked_at = CASE WHEN locked_at IS NULL AND second_factor_failures + 1 >= $2
                                THEN $3 ELSE locked_at END
           WHERE id = $1
           RETURNING second_factor_failures, (locked_at = $3) AS locked_now""",
        officer_id,
        lock_at,
        now,
    )
    locked_now = bool(r["locked_now"])
    return (lock_at if locked_now else r["second_factor_failures"]), locked_now


async def record_success(conn: asyncpg.Connection, officer_id: int) -> None:
    await conn.execute(
        "UPDATE ra_officers SET second_factor_failures = 0 WHERE id = $1", officer_id
    )


# -- challenges --------------------------------------------------------------------------------


async def put_challenge(
    conn: asyncpg.Connection,
    *,
    challenge_id: str,
    session_hash: bytes,
    officer_id: int,
    purpose: Purpose,
    challenge: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store a new challenge. The session's earlier ones of the same purpose and every expired
    one go first, so the table holds at most one per session and purpose."""
    await conn.execute(
        """DELETE FROM officer_factor_challenges
           WHERE expires_at <= $2 OR (session_hash = $1 AND purpose = $3)""",
        session_hash,
        now,
        purpose,
    )
    await conn.execute(
        """INSERT INTO officer_factor_challenges (id, session_hash, officer_id, purpose,
               challenge, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        challenge_id,
        session_hash,
        officer_id,
        purpose,
        challenge,
        now,
        expires_at,
    )


async def take_challenge(
    conn: asyncpg.Connection,
    *,
    challenge_id: str,
    session_hash: bytes,
    purpose: Purpose,
    now: datetime,
) -> bytes | None:
    """The challenge's bytes if it is this session's, of this purpose and not expired; it is
    deleted either way (single use: a failed attempt uses it up)."""
    r = await conn.fetchrow(
        """DELETE FROM officer_factor_challenges WHERE id = $1
           RETURNING session_hash, purpose, challenge, expires_at""",
        challenge_id,
    )
    if r is None or bytes(r["session_hash"]) != session_hash or r["purpose"] != purpose:
        return None
    if r["expires_at"] <= now:
        return None
    return bytes(r["challenge"])


async def delete_expired_challenges(conn: asyncpg.Connection, now: datetime) -> int:
    status = await conn.execute("DELETE FROM officer_factor_challenges WHERE expires_at <= $1", now)
    return int(status.split()[-1])


# -- session state -----------------------------------------------------------------------------


async def set_session_state(
    conn: asyncpg.Connection, session_hash: bytes, state: SessionState
) -> None:
    await conn.execute(
        "UPDATE sessions SET officer_factor = $2 WHERE id_hash = $1", session_hash, state
    )
