"""Certificate rows (issuance itself is a later issue; the RA view lists them already)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class CertificateRow:
    id: int
    serial: str
    usage: str
    status: str  # pending, issued, failed
    subject: str
    issuer_subject: str
    der: bytes | None
    not_before: datetime
    not_after: datetime
    downloaded_at: datetime | None
    superseded_by: int | None
    revoked_at: datetime | None


async def issued_for_subscribers(
    conn: asyncpg.Connection, subscriber_ids: list[int]
) -> dict[int, list[CertificateRow]]:
    """Issued certificates of these subscribers, by subscriber id."""
    out: dict[int, list[CertificateRow]] = {}
    if not subscriber_ids:
        return out
    rows = await conn.fetch(
        """SELECT c.subscriber_id, c.id, c.serial, c.usage, c.status, c.subject,
                  i.subject AS issuer_subject,
                  c.der, c.not_before, c.not_after, c.downloaded_at, c.superseded_by,
                  r.revoked_at
           FROM certificates c
           JOIN issuers i ON i.id = c.issuer_id
           LEFT JOIN revocations r ON r.certificate_id = c.id
           WHERE c.subscriber_id = ANY($1::bigint[]) AND c.status = 'issued'
           ORDER BY c.id""",
        subscriber_ids,
    )
    for r in rows:
        out.setdefault(r["subscriber_id"], []).append(CertificateRow(
            r["id"], r["serial"], r["usage"], r["status"], r["subject"], r["issuer_subject"],
            bytes(r["der"]) if r["der"] is not None else None, r["not_before"], r["not_after"],
            r["downloaded_at"], r["superseded_by"], r["revoked_at"],
        ))
    return out


async def issued_for_subscriber(
    conn: asyncpg.Connection, subscriber_id: int
) -> list[CertificateRow]:
    return (await issued_for_subscribers(conn, [subscriber_id])).get(subscriber_id, [])
