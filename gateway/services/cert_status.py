"""A stored certificate's status and whether it may be renewed, as of a given time.

One rule for the JSON API, the renewal service and CMP key update alike."""

from __future__ import annotations

from datetime import datetime, timedelta

from db.queries.certificates import CertificateRow


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
