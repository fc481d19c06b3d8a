"""The issuers table, kept in step with the issuer manifest at gateway start."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def upsert(
    conn: asyncpg.Connection,
    *,
    name: str,
    role: str,
    subject: str,
    cert_der: bytes,
    not_before: datetime,
    not_after: datetime,
    active: bool,
) -> tuple[int, bool]:
    """Insert or refresh one issuer; returns (id, certificate_changed)."""
    old = await conn.fetchval("SELECT cert_der FROM issuers WHERE name = $1", name)
    issuer_id = await conn.fetchval(
        """INSERT INTO issuers (name, role, subject, cert_der, not_before, not_after, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, subject = EXCLUDED.subject,
               cert_der = EXCLUDED.cert_der, not_before = EXCLUDED.not_before,
               not_after = EXCLUDED.not_after, active = EXCLUDED.active
           RETURNING id""",
        name,
        role,
        subject,
        cert_der,
        not_before,
        not_after,
        active,
    )
    await conn.execute(
        "INSERT INTO crl_state (issuer_id) VALUES ($1) ON CONFLICT DO NOTHING", issuer_id
    )
    return issuer_id, old is not None and bytes(old) != cert_der
