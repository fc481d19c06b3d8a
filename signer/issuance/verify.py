"""Check every signature with the CA public key before the bytes leave the signer.

A token that returns a wrong signature (fault, wrong key, tampering between process and HSM)
must never produce a certificate that someone holds; a failed check is an error of its own kind,
counted in metrics, and the result is dropped.

Certificates, OCSP responses and CRLs are checked from the token key's ``Signed`` record: the
signature is verified with the issuer certificate's public key over the digest of exactly the
bytes the builder handed to the token, the object must carry that signature and the DER about to
leave must contain those bytes. That is the same check as verifying the parsed object, without
re-encoding its TBS part and hashing it again (about 5 us of a certificate's 80 us of Python
work).
"""

from __future__ import annotations

from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from signer.errors import ErrorKind, SignerError
from signer.issuance.keys import PublicKey, Signed


class SigningIdentity(Protocol):
    """Who signed: an issuer (certificates, CRLs) or an OCSP responder (OCSP answers)."""

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> PublicKey: ...


_PKCS1 = padding.PKCS1v15()
_PREHASHED = {
    name: utils.Prehashed(algorithm)
    for name, algorithm in (
        ("sha256", hashes.SHA256()),
        ("sha384", hashes.SHA384()),
        ("sha512", hashes.SHA512()),
    )
}


def signature(
    issuer: SigningIdentity,
    sig: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | utils.Prehashed,
) -> None:
    key = issuer.public_key
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, _PKCS1, algorithm)
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(sig, data, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise SignerError(
            ErrorKind.SIGNATURE_CHECK_FAILED,
            f"signature by {issuer.name} does not verify with its public key",
        ) from None


def released(issuer: SigningIdentity, signed: Signed, carried: bytes, der: bytes) -> None:
    """Raise unless ``signed`` verifies, the object carries its signature (``carried``, from
    the object's parsed fields) and the DER about to leave contains the bytes that were signed."""
    signature(issuer, signed.signature, signed.digest, _PREHASHED[signed.hash_name])
    if carried != signed.signature or signed.data not in der:
        raise SignerError(
            ErrorKind.SIGNATURE_CHECK_FAILED,
            f"the object signed by {issuer.name} does not carry the checked signature",
        )
