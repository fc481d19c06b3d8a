"""Certificate signing requests from subscribers: parse, prove possession, check the key.

The CA takes only the public key from a CSR (the subject comes from the registration data), so
the checks here are: is it a PKCS#10 request at all, does its self-signature verify (proof that
the applicant holds the private key), and is the key one we certify. The signer checks the key
again; this is the first line, which gives the applicant a precise error code.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signer.vocabulary import key_refusal

MAX_CSR_CHARS = 16 * 1024
PEM_HEADERS = ("-----BEGIN CERTIFICATE REQUEST-----", "-----BEGIN NEW CERTIFICATE REQUEST-----")


class CsrError(Exception):
    """A CSR the service will not use; ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CheckedCsr:
    der: bytes  # the request as received, DER (renewal proofs sign challenge ‖ der)
    spki: bytes  # DER SubjectPublicKeyInfo: all the CA takes from the request
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    @property
    def key_description(self) -> str:
        if isinstance(self.public_key, rsa.RSAPublicKey):
            return f"RSA-{self.public_key.key_size}"
        return f"EC {self.public_key.curve.name}"


def _load(text: str) -> x509.CertificateSigningRequest:
    stripped = text.strip()
    try:
        if stripped.startswith(PEM_HEADERS):
            pem = stripped.replace("NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST")
            return x509.load_pem_x509_csr(pem.encode("ascii"))
        der = base64.b64decode("".join(stripped.split()), validate=True)
        return x509.load_der_x509_csr(der)
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise CsrError("bad_csr", "not a PKCS#10 certificate request (PEM or base64 DER)") from exc


def request_der(text: object) -> tuple[bytes, x509.CertificateSigningRequest]:
    """The request's DER and parsed form, without any check of its signature or key (renewal
    proofs sign ``challenge ‖ der`` and are checked before the CSR itself)."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CSR_CHARS:
        raise CsrError("bad_csr", "csr must be a non-empty PKCS#10 request")
    csr = _load(text)
    return csr.public_bytes(serialization.Encoding.DER), csr


def request_public_key(csr: x509.CertificateSigningRequest) -> object:
    """The request's public key; a key cryptography cannot load (an unknown algorithm OID, a
    curve it does not implement such as prime239v1, secp112r1 or SM2, key parameters it
    refuses) is a key type the CA does not certify: ``weak_key``, as API.md says."""
    try:
        return csr.public_key()
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise CsrError("weak_key", "the CSR's key type or curve is not supported") from exc


def check_key(key: object) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The key, if the CA certifies it (the shared key policy, ``signer/vocabulary.py``)."""
    why = key_refusal(key)
    if why is not None:
        raise CsrError("weak_key", why)
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key


def parse_csr(text: object) -> CheckedCsr:
    """Parse and check a CSR; raises ``CsrError`` with ``bad_csr``, ``pop_failed``, ``weak_key``."""
    if not isinstance(text, str) or not text.strip():
        raise CsrError("bad_csr", "csr must be a non-empty string")
    if len(text) > MAX_CSR_CHARS:
        raise CsrError("bad_csr", "csr is too large")
    csr = _load(text)
    key = request_public_key(csr)
    # the key first: an RSA key with a huge exponent would make the verification expensive
    checked = check_key(key)
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported signature algorithms raise from inside cryptography
        raise CsrError("bad_csr", "the CSR's signature algorithm is not supported") from exc
    if not valid:
        raise CsrError("pop_failed", "the CSR's signature does not verify with its own key")
    spki = checked.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CheckedCsr(csr.public_bytes(serialization.Encoding.DER), spki, checked)
