"""Renewal challenges (single use, short-lived) and renewal notices (sent once)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


async def insert_challenge(
    conn: asyncpg.Connection,
    *,
    challenge_hash: bytes,
    certificate_id: int,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO renewal_challenges (challenge_hash, certificate_id, created_at, expires_at)
           VALUES ($1, $2, $3, $4)""",
        challenge_hash,
        certificate_id,
        now,
        expires_at,
    )


@dataclass(frozen=True)
class Challenge:
    certificate_id: int
    expires_at: datetime


async def consume_challenge(
    conn: asyncpg.Connection, challenge_hash: bytes, now: datetime
) -> Challenge | None:
    """Use a challenge up (whatever the outcome of the attempt); None if unknown or used."""
    r = await conn.fetchrow(
        """UPDATE renewal_challenges SET used_at = $2
           WHERE challenge_hash = $1 AND used_at IS NULL
           RETURNING certificate_id, expires_at""",
        challenge_hash,
        now,
    )
    return Challenge(r["certificate_id"], r["expires_at"]) if r else None


async def delete_expired_challenges(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.execute("DELETE FROM renewal_challenges WHERE expires_at < $1", now)


@dataclass(frozen=True)
class NoticeTarget:
    certificate_id: int
    serial: str
    usage: str
    not_after: datetime
    email: str
    name: str
    account: str


async def claim_notices(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    window_start_before: datetime,
    stale_claim_before: datetime,
    limit: int = 100,
) -> list[NoticeTarget]:
    """Claim certificates that entered the renewal window and have no notice yet.

    ``window_start_before`` is now + window: a certificate whose not_after is before it is
    inside its window. Inserting the claim row is atomic across gateways (the primary key);
    claims older than ``stale_claim_before`` that were never sent are taken over.
    """
    rows = await conn.fetch(
        """WITH due AS (
               SELECT c.id, s.email FROM certificates c
               JOIN subscribers s ON s.id = c.subscriber_id
               LEFT JOIN revocations r ON r.certificate_id = c.id
               LEFT JOIN renewal_notices n ON n.certificate_id = c.id
               WHERE c.status = 'issued' AND r.certificate_id IS NULL
                 AND c.superseded_by IS NULL AND c.not_after > $1 AND c.not_after <= $2
                 AND (n.certificate_id IS NULL
                      OR (n.sent_at IS NULL AND n.claimed_at < $3))
               ORDER BY c.not_after LIMIT $4
               FOR UPDATE OF c SKIP LOCKED
           ), claimed AS (
               INSERT INTO renewal_notices (certificate_id, recipient, claimed_at)
               SELECT id, email, $1 FROM due
               ON CONFLICT (certificate_id) DO UPDATE
                   SET claimed_at = EXCLUDED.claimed_at,
                       attempts = renewal_notices.attempts + 1
                   WHERE renewal_notices.sent_at IS NULL AND renewal_notices.claimed_at < $3
               RETURNING certificate_id
           )
           SELECT c.id, c.serial, c.usage, c.not_after, s.email, s.name, a.account
           FROM claimed JOIN certificates c ON c.id = claimed.certificate_id
           JOIN subscribers s ON s.id = c.subscriber_id
           JOIN accounts a ON a.subscriber_id = s.id
           ORDER BY c.not_after""",
        now,
        window_start_before,
        stale_claim_before,
        limit,
    )
    return [
        NoticeTarget(
            r["id"], r["serial"], r["usage"], r["not_after"], r["email"], r["name"], r["account"]
        )
        for r in rows
    ]


async def notice_sent(conn: asyncpg.Connection, certificate_id: int, now: datetime) -> None:
    await conn.execute(
        "UPDATE renewal_notices SET sent_at = $2, last_error = NULL WHERE certificate_id = $1",
        certificate_id,
        now,
    )


async def notice_failed(
    conn: asyncpg.Connection, certificate_id: int, error: str, *, retry_claimed_at: datetime
) -> None:
    """Keep the row (attempts count) but back-date the claim so a later round retries."""
    await conn.execute(
        """UPDATE renewal_notices SET last_error = $2, claimed_at = $3
           WHERE certificate_id = $1 AND sent_at IS NULL""",
        certificate_id,
        error[:500],
        retry_claimed_at,
    )
