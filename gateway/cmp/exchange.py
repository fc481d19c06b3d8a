"""What one CMP exchange has established as its steps run, shared by every step module.

The protection checks (``gateway.cmp.authentication``) fill in who sent the request and how;
the bodies read that (the enrolment secret, the holder's certificate) and note what the
answer needs (implicit confirmation); the answer (``gateway.cmp.answer``) is then protected
the way the request was. One small record passed along keeps each step a plain function or
small class of its own instead of state spread over one large server class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from db.queries import certificates as cert_q
from gateway.cmp import messages, protection

# what a body answers with: the PKIBody choice name and its value
Reply = tuple[str, Any]


@dataclass
class Exchange:
    """What one request has established so far: how its answer is protected."""

    request: messages.Request | None = None
    secret: bytes | None = None  # MAC with this secret
    pbm: protection.PbmParams | None = None
    signed: bool = False  # the request was signature-protected: sign the answer
    sender_cert: x509.Certificate | None = None
    sender_row: cert_q.CertificateRow | None = None
    account_id: int | None = None
    secret_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
