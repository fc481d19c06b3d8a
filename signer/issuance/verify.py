"""Check every signature with the CA public key before the bytes leave the signer.

A token that returns a wrong signature (fault, wrong key, tampering between process and HSM)
must never produce a certificate that someone holds; a failed check is an error of its own kind,
counted in metrics, and the result is dropped. The check itself runs in the key object as each
signature comes back from the token (``signer.hsm.keys``); this module checks that what is
released carries that signature, and verifies the worker's start-up test signature.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from signer.errors import ErrorKind, SignerError
from signer.issuance.issuer import Issuer

_PKCS1 = padding.PKCS1v15()


def signature(issuer: Issuer, sig: bytes, data: bytes, algorithm: hashes.HashAlgorithm) -> None:
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
            f"signature by issuer {issuer.name} does not verify with its public key",
        ) from None


def carries_checked_signature(issuer: Issuer, signature: bytes) -> None:
    """The finished certificate, CRL or OCSP response carries the very signature the issuer's
    key verified over its digest when the token returned it (``signer.hsm.keys``): checked
    there, before the builder embedded it, without encoding the to-be-signed part again."""
    if not signature or signature != issuer.key.last_signature:
        raise SignerError(
            ErrorKind.SIGNATURE_CHECK_FAILED,
            f"the object signed by issuer {issuer.name} does not carry the checked signature",
        )
