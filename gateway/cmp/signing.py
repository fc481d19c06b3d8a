"""Signed CMP answers through the signer: the CMP server certificate (issued by the active
issuing CA for the CMP key on the online token) and the key's signature over an answer's
ProtectedPart. The gateway never holds the key; the signer checks what it signs."""

from __future__ import annotations

import time

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1.codec.der import encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280

from signer.client import SignerOps
from signer.protocol import CmpRequest

CERT_TTL = 60.0  # seconds the gateway reuses the certificate before asking again
DEADLINE = 5.0


def algorithm(cert: x509.Certificate) -> rfc5280.AlgorithmIdentifier:
    """The signature algorithm the signer uses for this key (RFC 9481): ECDSA with SHA-256
    (SHA-384 for P-384), or sha256WithRSAEncryption."""
    key = cert.public_key()
    alg = rfc5280.AlgorithmIdentifier()
    if isinstance(key, ec.EllipticCurvePublicKey):
        oid = "1.2.840.10045.4.3.3" if key.curve.key_size >= 384 else "1.2.840.10045.4.3.2"
        alg["algorithm"] = univ.ObjectIdentifier(oid)
    else:
        alg["algorithm"] = univ.ObjectIdentifier("1.2.840.113549.1.1.11")
        alg["parameters"] = encoder.encode(univ.Null(""))
    return alg


class SignerResponseSigner:
    def __init__(self, signer: SignerOps) -> None:
        self.signer = signer
        self._cert: bytes | None = None
        self._fetched = 0.0

    async def certificate(self) -> tuple[rfc5280.AlgorithmIdentifier, bytes]:
        if self._cert is None or time.monotonic() - self._fetched > CERT_TTL:
            self._cert = await self.signer.cmp(CmpRequest(None), time.time() + DEADLINE)
            self._fetched = time.monotonic()
        assert self._cert is not None
        return algorithm(x509.load_der_x509_certificate(self._cert)), self._cert

    async def sign(self, protected_part: bytes) -> bytes:
        return await self.signer.cmp(CmpRequest(protected_part), time.time() + DEADLINE)
