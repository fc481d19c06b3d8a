"""Terms the gateway and the signer share, defined once.

The gateway imports this module (it imports nothing that touches PKCS#11): certificate usages,
revocation reasons, the subject key policy and the characters no text field may hold all mean
the same on both sides of the wire, so they are written here and nowhere else.
"""

from __future__ import annotations

from typing import Literal, get_args

Usage = Literal["signing", "encryption"]
USAGES: tuple[str, ...] = get_args(Usage)

# RFC 5280 5.3.1 CRLReason names (value 7 is unused), as the wire and the database spell them
RevocationReason = Literal[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "removeFromCRL",
    "privilegeWithdrawn",
    "aACompromise",
]
REVOCATION_REASONS: tuple[str, ...] = get_args(RevocationReason)
