"""What issuance needs of a CA key, without knowing where the key lives.

The builders sign with a private-key object; the release step then checks that signature from
the key's own record of what it signed (``verify.released``). ``RecordingKey`` is that contract
and ``KeySource`` the place keys are found, both satisfied by the token's classes
(``signer/hsm/keys.py``, ``signer/hsm/token.py``), so nothing under ``issuance/`` imports
PKCS#11. A token fault reaches this package only as ``SignerError(token_unavailable)``: the
token layer translates it where it happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class Signed:
    """One ``sign()`` call: the bytes the builder asked to sign, their digest, and the signature
    as handed back to the builder (DER for ECDSA)."""

    data: bytes
    digest: bytes
    hash_name: str
    signature: bytes


class RecordingKey(Protocol):
    """A private key that records what it signed: ``take_signed()`` hands out the record of
    the last ``sign()`` once, and ``signatures`` counts them (for the metrics by key role)."""

    signatures: int

    def sign(self, data: bytes, *args: Any) -> bytes: ...

    def take_signed(self) -> Signed: ...

    def public_key(self) -> Any: ...


class KeySource(Protocol):
    """Where an issuer's key is found by label (the worker's logged-in token session)."""

    def find_public_key(self, label: str) -> PublicKey: ...

    def signing_key(self, label: str, public: PublicKey | None = None) -> RecordingKey: ...


def signature_hash(key: PublicKey) -> hashes.HashAlgorithm:
    """The hash a CA key signs with: SHA-384 for P-384 keys, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()
