"""CA private keys that live on the token, shaped as cryptography private-key objects.

cryptography's certificate, CRL and OCSP builders call ``key.sign(data, ...)``; these classes
answer by hashing in the process and asking the token for a raw signature over the digest
(CKM_RSA_PKCS over a DigestInfo, CKM_ECDSA over the hash). Hashing locally keeps the PKCS#11 call
the same size whatever is signed. Each ``sign()`` also keeps what it sent and what came back
(``take_signed()``: the ``RecordingKey`` of ``signer/issuance/keys.py``), so that the release
step can verify that signature over the digest it was made from, without re-encoding and
re-hashing the finished object. Everything that is not signing raises: the key never leaves the
token. A key object belongs to one worker process and is used by one thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Mechanism

from signer.issuance.keys import Signed, signature_hash

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1); these are the published constants, the only
# DER we write by hand, because PKCS#1 v1.5 signing over a digest needs them.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

RawSign = Callable[[bytes, Mechanism], bytes]


class _Recorder:
    """Keeps the last ``Signed`` record until the caller takes it, and counts signatures (the
    signer's metrics tell CA keys' signatures from OCSP responder keys' by these counts)."""

    _signed: Signed | None = None
    signatures: int = 0

    def _record(self, data: bytes, digest: bytes, hash_name: str, signature: bytes) -> bytes:
        self._signed = Signed(data, digest, hash_name, signature)
        self.signatures += 1
        return signature

    def take_signed(self) -> Signed:
        """The record of the last ``sign()``, once: a second take (or none signed) raises."""
        signed, self._signed = self._signed, None
        if signed is None:
            raise RuntimeError("no signature to take: sign() was not called since the last take")
        return signed


def _refuse(what: str) -> NoReturn:
    raise TypeError(f"{what} is not possible: the CA key never leaves the token")


def _digest(data: bytes, algorithm: Any) -> tuple[str, bytes]:
    if isinstance(algorithm, utils.Prehashed):
        return algorithm._algorithm.name, data
    name = algorithm.name
    if name not in _DIGEST_INFO:
        raise ValueError(f"unsupported hash {name} for a token key")
    return name, hashlib.new(name, data).digest()


class TokenRSAPrivateKey(_Recorder, rsa.RSAPrivateKey):
    """An RSA key on the token; ``raw_sign(data, mechanism)`` performs C_Sign."""

    def __init__(self, public: rsa.RSAPublicKey, raw_sign: RawSign, label: str) -> None:
        self._public = public
        self._raw_sign = raw_sign
        self.label = label

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm: Any) -> bytes:
        if not isinstance(padding_, padding.PKCS1v15):
            raise ValueError("token RSA keys sign with PKCS#1 v1.5 only")
        self._signed = None
        name, digest = _digest(data, algorithm)
        sig = self._raw_sign(_DIGEST_INFO[name] + digest, Mechanism.RSA_PKCS)
        return self._record(data, digest, name, sig)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        _refuse("decryption")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _refuse("exporting private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _refuse("exporting the private key")

    def __copy__(self) -> TokenRSAPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenRSAPrivateKey:
        return self


class TokenECPrivateKey(_Recorder, ec.EllipticCurvePrivateKey):
    """An EC key on the token; returns DER-encoded ECDSA signatures as cryptography does."""

    def __init__(self, public: ec.EllipticCurvePublicKey, raw_sign: RawSign, label: str) -> None:
        self._public = public
        self._raw_sign = raw_sign
        self.label = label
        self._half = (public.curve.key_size + 7) // 8

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise ValueError("token EC keys sign with ECDSA only")
        self._signed = None
        name, digest = _digest(data, signature_algorithm.algorithm)
        raw = self._raw_sign(digest, Mechanism.ECDSA)
        if len(raw) != 2 * self._half:
            raise ValueError("token returned an ECDSA signature of the wrong length")
        r = int.from_bytes(raw[: self._half], "big")
        s = int.from_bytes(raw[self._half :], "big")
        return self._record(data, digest, name, utils.encode_dss_signature(r, s))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _refuse("key agreement")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _refuse("exporting private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _refuse("exporting the private key")

    def __copy__(self) -> TokenECPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenECPrivateKey:
        return self


TokenPrivateKey = TokenRSAPrivateKey | TokenECPrivateKey
__all__ = [
    "Signed",
    "TokenECPrivateKey",
    "TokenPrivateKey",
    "TokenRSAPrivateKey",
    "signature_hash",
    "wrap",
]


def wrap(
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, raw_sign: RawSign, label: str
) -> TokenRSAPrivateKey | TokenECPrivateKey:
    if isinstance(public, rsa.RSAPublicKey):
        return TokenRSAPrivateKey(public, raw_sign, label)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenECPrivateKey(public, raw_sign, label)
    raise TypeError(f"unsupported CA key type {type(public).__name__}")
