"""CA certificates: build with cryptography's builders, sign on the token, check, store.

The root and issuing CA certificates are the only certificates this tool makes. Both are built
from typed parameters (never from a request), signed by a token key through the same
``cryptography`` private-key wrapper the signer uses, and checked before anything is written:
signature against the issuer, public key against the token's key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from pkcs11 import Attribute, CertificateType, ObjectClass

from hsm_config.keygen import KeysError, colon_hex
from signer.hsm.keys import TokenPrivateKey, signature_hash
from signer.hsm.token import PublicKey

# Subject attributes a ceremony file may use, in the order they appear in the name.
SUBJECT_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}
# Backdating covers clocks of relying parties that run a little behind.
BACKDATE = dt.timedelta(minutes=5)


def subject_name(fields: Mapping[str, str]) -> x509.Name:
    unknown = sorted(set(fields) - set(SUBJECT_ATTRIBUTES))
    if unknown:
        raise KeysError(f"unknown subject attribute(s) {', '.join(unknown)}", 2)
    if not fields.get("CN"):
        raise KeysError("a CA subject needs a CN", 2)
    if "C" in fields and len(fields["C"]) != 2:
        raise KeysError("subject C must be a two-letter country code", 2)
    return x509.Name(
        [
            x509.NameAttribute(oid, str(fields[key]))
            for key, oid in SUBJECT_ATTRIBUTES.items()
            if fields.get(key)
        ]
    )


def subject_fields(name: x509.Name) -> dict[str, str]:
    """The inverse of ``subject_name`` for the attributes we write (used by rotation)."""
    by_oid = {oid: key for key, oid in SUBJECT_ATTRIBUTES.items()}
    out: dict[str, str] = {}
    for attr in name:
        key = by_oid.get(attr.oid)
        if key:
            out[key] = str(attr.value)
    return out


def _ca_extensions(
    builder: x509.CertificateBuilder,
    public_key: PublicKey,
    issuer_public_key: PublicKey,
    path_len: int | None,
    digital_signature: bool,
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    )


def build_root(
    key: TokenPrivateKey, subject: x509.Name, validity_days: int, now: dt.datetime
) -> x509.Certificate:
    """Self-signed root: CA, no path length limit, keyCertSign + cRLSign only."""
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=validity_days))
    )
    builder = _ca_extensions(builder, public, public, None, digital_signature=False)
    cert = builder.sign(key, signature_hash(public))
    verify_issued_by(cert, cert)
    return cert


def build_issuing(
    root_cert: x509.Certificate,
    root_key: TokenPrivateKey,
    public_key: PublicKey,
    subject: x509.Name,
    validity_days: int,
    now: dt.datetime,
    path_len: int = 0,
    *,
    root_crl_url: str,
    root_cert_url: str,
) -> x509.Certificate:
    """Issuing CA signed by the root key.

    keyCertSign + cRLSign only: OCSP answers are signed by a delegated responder key with its
    own short-lived certificate, so the issuing CA key signs certificates and CRLs and nothing
    else. The certificate names where relying parties find the root's CRL (the ceremony signs
    it, the gateway serves it) and the root certificate. The validity never outlives the root's.
    """
    not_after = min(now + dt.timedelta(days=validity_days), root_cert.not_valid_after_utc)
    root_public = root_key.public_key()
    if root_cert.public_key() != root_public:
        raise KeysError("the root certificate does not match the root key on the token")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
    )
    builder = _ca_extensions(builder, public_key, root_public, path_len, digital_signature=False)
    builder = builder.add_extension(
        x509.CRLDistributionPoints(
            [
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(root_crl_url)],
                    relative_name=None,
                    reasons=None,
                    crl_issuer=None,
                )
            ]
        ),
        critical=False,
    ).add_extension(
        x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(root_cert_url),
                )
            ]
        ),
        critical=False,
    )
    cert = builder.sign(root_key, signature_hash(root_public))
    verify_issued_by(cert, root_cert)
    return cert


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Signature and name chaining, checked in software after the token signed."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:  # InvalidSignature has no text
        raise KeysError(
            f"certificate {cert.subject.rfc4514_string()} does not verify against "
            f"{issuer.subject.rfc4514_string()}: {type(exc).__name__}"
        ) from None


def matches_public_key(cert: x509.Certificate, public_key: PublicKey) -> bool:
    return cert.public_key() == public_key


def fingerprint(cert: x509.Certificate) -> str:
    return colon_hex(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


def to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def store_on_token(session: Any, cert: x509.Certificate, label: str, key_id: bytes) -> None:
    """A CKO_CERTIFICATE next to its key (same label and CKA_ID), as PKCS#11 tools expect."""
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.MODIFIABLE: False,
            Attribute.LABEL: label,
            Attribute.ID: key_id,
            Attribute.SUBJECT: cert.subject.public_bytes(),
            Attribute.ISSUER: cert.issuer.public_bytes(),
            Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER),
        }
    )


def describe_cert(cert: x509.Certificate) -> str:
    return (
        f"{cert.subject.rfc4514_string()} serial {cert.serial_number:x} "
        f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
    )
