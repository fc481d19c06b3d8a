"""Revocations of issued certificates."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def insert(
    conn: asyncpg.Connection,
    *,
    certificate_id: int,
    reason: str,
    revoked_at: datetime,
    revoked_by: int | None,
) -> bool:
    """False when the certificate is revoked already."""
    done = await conn.fetchval(
        """INSERT INTO revocations (certificate_id, reason, revoked_at, revoked_by)
           VALUES ($1, $2, $3, $4) ON CONFLICT (certificate_id) DO NOTHING
           RETURNING certificate_id""",
        certificate_id,
        reason,
        revoked_at,
        revoked_by,
    )
    return done is not None
