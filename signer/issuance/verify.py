"""Check every signature with the CA public key before the bytes leave the signer.

A token that returns a wrong signature (fault, wrong key, tampering between process and HSM)
must never produce a certificate that someone holds; a failed check is an error of its own kind,
counted in metrics, and the result is dropped.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

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


def certificate(issuer: Issuer, cert: x509.Certificate) -> None:
    algorithm = cert.signature_hash_algorithm
    assert algorithm is not None
    signature(issuer, cert.signature, cert.tbs_certificate_bytes, algorithm)


def crl(issuer: Issuer, crl_: x509.CertificateRevocationList) -> None:
    if not crl_.is_signature_valid(issuer.public_key):
        raise SignerError(
            ErrorKind.SIGNATURE_CHECK_FAILED, f"CRL signature of issuer {issuer.name} is invalid"
        )


def ocsp_response(issuer: Issuer, response: ocsp.OCSPResponse) -> None:
    algorithm = response.signature_hash_algorithm
    assert algorithm is not None
    signature(issuer, response.signature, response.tbs_response_bytes, algorithm)
