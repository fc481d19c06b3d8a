"""Terms the gateway and the signer share, defined once.

The gateway imports this module (it imports nothing that touches PKCS#11): certificate usages,
revocation reasons, the subject key policy, the serial spelling and the characters no text may
hold mean the same on both sides of the wire, so they are written here and nowhere else.
"""

from __future__ import annotations

from typing import Literal, get_args

from cryptography.hazmat.primitives.asymmetric import ec, rsa

# -- certificate usages: the profiles the CA issues under ------------------------------------------
Usage = Literal["signing", "encryption"]
USAGES: tuple[str, ...] = get_args(Usage)

# -- revocation reasons ----------------------------------------------------------------------------
# RFC 5280 5.3.1 CRLReason names, spelled as cryptography's ``x509.ReasonFlags`` values (so
# ``x509.ReasonFlags(name)`` is the flag), as the wire and the database carry them
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
# what a revocation request may state (the RA's, and a subscriber's own through the API); the
# others are the CA's to state
RequestedReason = Literal[
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
]
REQUESTED_REASONS: tuple[str, ...] = get_args(RequestedReason)
# the CRLReason ENUMERATED values (8 is unused)
REASON_CODES: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}

# -- serial numbers: lower-case hex without leading zeros, at most 20 octets -----------------------
SERIAL_PATTERN = r"^[1-9a-f][0-9a-f]{0,39}$"

# -- text: the characters no field may hold (C0 controls and DEL), as a regex class body -----------
CONTROL_CHARS = "\\x00-\\x1f\\x7f"

# -- the subject key policy: what the CA certifies -------------------------------------------------
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
RSA_EXPONENT = 65537
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)


def key_refusal(key: object) -> str | None:
    """Why the CA does not certify ``key``, or None: RSA of 2048-8192 bits with the exponent
    65537, or EC on P-256 or P-384, and nothing else. The gateway refuses a CSR with this
    reason before anything is stored; the signer refuses the same key again before it signs."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            return f"RSA keys need at least {RSA_MIN_BITS} bits, got {key.key_size}"
        if key.key_size > RSA_MAX_BITS:
            return f"RSA keys above {RSA_MAX_BITS} bits are not supported"
        if key.public_numbers().e != RSA_EXPONENT:
            return f"RSA keys must use the public exponent {RSA_EXPONENT}"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            return f"curve {key.curve.name} is not supported (P-256, P-384)"
        return None
    return "only RSA and EC (P-256, P-384) keys are supported"
