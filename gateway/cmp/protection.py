"""Message protection: the password-based MAC of RFC 4210 5.1.3.1 (what ``openssl cmp -secret``
uses) and signatures by a certificate's key (RFC 9481 algorithms).

PBMAC: key = OWF^iterationCount(secret ‖ salt), MAC = HMAC(key, DER(ProtectedPart)); the
hashes and the HMAC come from cryptography, the parameters from pyasn1. The iteration count a
client may ask for is bounded, so a request cannot make the server hash for long.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc9480

from gateway.cmp.failures import CmpFailure

MIN_ITERATIONS = 100  # RFC 4210: at least 100
MAX_ITERATIONS = 100_000
MAX_SALT = 64
OWF = {
    "1.3.14.3.2.26": hashes.SHA1,
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
MACS = {
    "1.3.6.1.5.5.8.1.2": hashes.SHA1,  # hmac-sha1 (openssl cmp's default)
    "1.2.840.113549.2.7": hashes.SHA1,  # hmacWithSHA1
    "1.2.840.113549.2.9": hashes.SHA256,  # hmacWithSHA256
    "1.2.840.113549.2.10": hashes.SHA384,
    "1.2.840.113549.2.11": hashes.SHA512,
}
SIGNATURES = {  # algorithm OID → (hash, RSA or EC)
    "1.2.840.113549.1.1.11": (hashes.SHA256, "rsa"),
    "1.2.840.113549.1.1.12": (hashes.SHA384, "rsa"),
    "1.2.840.113549.1.1.13": (hashes.SHA512, "rsa"),
    "1.2.840.10045.4.3.2": (hashes.SHA256, "ec"),
    "1.2.840.10045.4.3.3": (hashes.SHA384, "ec"),
    "1.2.840.10045.4.3.4": (hashes.SHA512, "ec"),
}
PBM = str(rfc9480.id_PasswordBasedMac)


def is_mac(alg: rfc5280.AlgorithmIdentifier) -> bool:
    return str(alg["algorithm"]) == PBM


@dataclass(frozen=True)
class PbmParams:
    salt: bytes
    owf: str
    iterations: int
    mac: str

    @classmethod
    def of(cls, alg: rfc5280.AlgorithmIdentifier) -> PbmParams:
        """The request's parameters, checked: known OWF and MAC, bounded salt and count."""
        try:
            params, rest = decoder.decode(alg["parameters"], asn1Spec=rfc9480.PBMParameter())
        except (PyAsn1Error, ValueError, TypeError) as exc:
            raise CmpFailure("badAlg", "PBMParameter does not parse") from exc
        if rest:
            raise CmpFailure("badAlg", "PBMParameter: trailing data")
        p = cls(
            salt=bytes(params["salt"]),
            owf=str(params["owf"]["algorithm"]),
            iterations=int(params["iterationCount"]),
            mac=str(params["mac"]["algorithm"]),
        )
        if p.owf not in OWF or p.mac not in MACS:
            raise CmpFailure("badAlg", "unsupported one-way function or MAC in PBMParameter")
        if not MIN_ITERATIONS <= p.iterations <= MAX_ITERATIONS:
            raise CmpFailure(
                "badAlg", f"iterationCount must be {MIN_ITERATIONS} to {MAX_ITERATIONS}"
            )
        if not 8 <= len(p.salt) <= MAX_SALT:
            raise CmpFailure("badAlg", "salt must be 8 to 64 octets")
        return p

    def fresh(self) -> PbmParams:
        """The same algorithms with a new salt, for the answer."""
        return PbmParams(secrets.token_bytes(16), self.owf, self.iterations, self.mac)

    def algorithm(self) -> rfc5280.AlgorithmIdentifier:
        params = rfc9480.PBMParameter()
        params["salt"] = self.salt
        params["owf"]["algorithm"] = univ.ObjectIdentifier(self.owf)
        params["iterationCount"] = self.iterations
        params["mac"]["algorithm"] = univ.ObjectIdentifier(self.mac)
        alg = rfc5280.AlgorithmIdentifier()
        alg["algorithm"] = rfc9480.id_PasswordBasedMac
        alg["parameters"] = encoder.encode(params)
        return alg

    def mac_of(self, secret: bytes, data: bytes) -> bytes:
        key = secret + self.salt
        for _ in range(self.iterations):
            digest = hashes.Hash(OWF[self.owf]())
            digest.update(key)
            key = digest.finalize()
        h = hmac.HMAC(key, MACS[self.mac]())
        h.update(data)
        return h.finalize()


def mac_verifies(params: PbmParams, secret: bytes, data: bytes, protection: bytes) -> bool:
    return constant_time.bytes_eq(params.mac_of(secret, data), protection)


def signature_verifies(
    alg: rfc5280.AlgorithmIdentifier, cert: x509.Certificate, data: bytes, signature: bytes
) -> bool:
    """A signature by ``cert``'s key with an RFC 9481 algorithm; False for any other."""
    return pop_verifies(alg, cert.public_key(), data, signature)


def pop_verifies(
    alg: rfc5280.AlgorithmIdentifier, public_key: object, data: bytes, signature: bytes
) -> bool:
    """POPOSigningKey: the certificate request signed by the key it asks a certificate for."""
    known = SIGNATURES.get(str(alg["algorithm"]))
    if known is None:
        return False
    hash_cls, kind = known
    try:
        if kind == "rsa" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif kind == "ec" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
