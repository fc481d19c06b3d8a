"""The certificate object of API.md, computed from a stored row and the clock."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

from db.queries.certificates import CertificateRow


def rfc3339(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(row: CertificateRow, now: datetime, window: timedelta) -> tuple[str, bool]:
    """(status, renewable), the first matching status wins."""
    if row.revoked_at is not None:
        return "revoked", False
    if row.superseded_by is not None:
        return "superseded", False
    if now >= row.not_after:
        return "expired", False
    in_window = now >= row.not_after - window
    if row.downloaded_at is None:
        return "issued", in_window
    return ("expiring" if in_window else "valid"), in_window


def certificate_object(row: CertificateRow, now: datetime, window_days: int) -> dict[str, Any]:
    st, renewable = status(row, now, timedelta(days=window_days))
    return {
        "id": row.id,
        "serial": row.serial,
        "usage": row.usage,
        "status": st,
        "subject": row.subject,
        "issuer": row.issuer_subject,
        "not_before": rfc3339(row.not_before),
        "not_after": rfc3339(row.not_after),
        "downloaded": row.downloaded_at is not None,
        "renewable": renewable,
        "certificate": ssl.DER_cert_to_PEM_cert(row.der) if row.der else None,
        # extensions of API.md: when and why it was revoked (null unless revoked)
        "revoked_at": rfc3339(row.revoked_at),
        "revocation_reason": row.revocation_reason if row.revoked_at is not None else None,
    }
