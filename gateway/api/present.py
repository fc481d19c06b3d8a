"""JSON presentation of stored values: the certificate object of API.md and its timestamps."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import msgspec

from db.queries.certificates import CertificateRow
from gateway.api import models
from gateway.services.cert_status import status


def rfc3339(at: datetime) -> str:
    """API.md's timestamp: UTC, whole seconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate(row: CertificateRow, now: datetime, window_days: int) -> models.Certificate:
    """The certificate object for a stored row, as of ``now``; checked against the model on
    the way out, so a row that breaks the declared contract fails here, not in a client."""
    st, renewable = status(row, now, timedelta(days=window_days))
    revoked = row.revoked_at is not None
    return msgspec.convert(
        {
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
            "revoked_at": rfc3339(row.revoked_at) if row.revoked_at is not None else None,
            "revocation_reason": row.revocation_reason if revoked else None,
        },
        models.Certificate,
    )
