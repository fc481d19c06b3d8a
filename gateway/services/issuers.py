"""The issuing and root CAs, read from the issuer manifest and kept in step with the database.

The manifest (``[ca] dir``/issuers.toml, written by the key ceremonies) names every CA, its
certificate and which issuing CA is active. The gateway uses it for the /ca endpoints, for the
issuer of new certificates, for OCSP CertID matching and for CRLs (rotated-out issuers too).

A root CA is offline: the signer has no key of it, so the gateway neither asks for its CRL nor
answers OCSP for the certificates it issued (the issuing CAs: their status is in the root's
CRL). The root's CRL is signed in a ceremony and served from its file as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_alt_modules import rfc5280

from config.manifest import load_manifest
from db.queries import issuers as issuer_q

log = logging.getLogger("gateway.issuers")
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issuer:
    name: str
    role: str  # root or issuing
    active: bool
    parent: str | None
    certificate: x509.Certificate
    der: bytes
    crl_path: Path | None = None  # a root's ceremony-signed CRL (DER); None for issuing CAs

    @property
    def offline(self) -> bool:
        """A root: its key is on the offline root token, out of the signer's reach."""
        return self.role == "root"

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def pem(self) -> bytes:
        return self.certificate.public_bytes(PEM)

    def cert_id_hashes(self, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
        """RFC 6960 CertID issuerNameHash and issuerKeyHash under ``algorithm``."""
        name = self.certificate.subject.public_bytes()
        spki = self.certificate.public_key().public_bytes(
            DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # the key hash is over the subjectPublicKey BIT STRING contents, without the
        # algorithm identifier
        key_bits = _spki_bit_string(spki)
        name_h = hashes.Hash(algorithm)
        name_h.update(name)
        key_h = hashes.Hash(algorithm)
        key_h.update(key_bits)
        return name_h.finalize(), key_h.finalize()


def _spki_bit_string(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING contents of a DER SubjectPublicKeyInfo (pyasn1)."""
    decoded, rest = der_decoder.decode(spki, asn1Spec=rfc5280.SubjectPublicKeyInfo())
    if rest:
        raise ValueError("trailing bytes after the SubjectPublicKeyInfo")
    return decoded["subjectPublicKey"].asOctets()


class IssuerRegistry:
    """The CAs of this service, by name, with their database ids once ``sync`` has run."""

    def __init__(self, issuers: list[Issuer]) -> None:
        self.issuers = issuers
        self._by_name = {i.name: i for i in issuers}
        self.ids: dict[str, int] = {}
        self._hash_cache: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    @classmethod
    def from_manifest(cls, path: Path | None) -> IssuerRegistry:
        if path is None:
            return cls([])
        issuers = []
        for entry in load_manifest(path):
            cert = entry.load_certificate()
            issuers.append(
                Issuer(
                    entry.name,
                    entry.role,
                    entry.active,
                    entry.parent,
                    cert,
                    cert.public_bytes(DER),
                    entry.crl_path if entry.role == "root" else None,
                )
            )
        if not issuers:
            log.warning("no issuers in %s: issuance, CRL and OCSP are unavailable", path)
        return cls(issuers)

    async def sync(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            for issuer in self.issuers:
                issuer_id, changed = await issuer_q.upsert(
                    conn,
                    name=issuer.name,
                    role=issuer.role,
                    subject=issuer.subject,
                    cert_der=issuer.der,
                    not_before=issuer.not_before,
                    not_after=issuer.not_after,
                    active=issuer.active,
                )
                if changed:
                    log.warning("issuer %s has a new certificate in the manifest", issuer.name)
                self.ids[issuer.name] = issuer_id

    def get(self, name: str) -> Issuer | None:
        return self._by_name.get(name)

    def by_id(self, issuer_id: int) -> Issuer | None:
        for name, i in self.ids.items():
            if i == issuer_id:
                return self._by_name[name]
        return None

    @property
    def active(self) -> Issuer | None:
        return next((i for i in self.issuers if i.active), None)

    def chain_pem(self) -> bytes:
        """The active issuing CA certificate(s), then the root(s)."""
        first = [i for i in self.issuers if i.active]
        roots = [i for i in self.issuers if i.role == "root"]
        return b"".join(i.pem() for i in [*first, *roots])

    def match_cert_id(
        self, algorithm: hashes.HashAlgorithm, name_hash: bytes, key_hash: bytes
    ) -> Issuer | None:
        """The online issuer an OCSP CertID names (any of the hash algorithms clients use); the
        offline root is not answered for."""
        for issuer in self.issuers:
            if issuer.offline:
                continue
            key = (issuer.name, algorithm.name)
            if key not in self._hash_cache:
                self._hash_cache[key] = issuer.cert_id_hashes(algorithm)
            if self._hash_cache[key] == (name_hash, key_hash):
                return issuer
        return None
