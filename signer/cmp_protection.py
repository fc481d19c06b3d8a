"""The CMP protection key: signs the CMP server's answers to signature-protected requests.

The key (``ca-keys cmp-key``, ``[ca] cmp_key_label``) is on the online token; its certificate
is issued here by the active issuing CA under a fixed internal profile that no request can ask
for (end entity, digitalSignature, extended key usage id-kp-cmcRA, RFC 9483 4.1.1), valid
``[signer] ocsp_responder_validity_days`` and renewed when a third of that is left, kept in the
state folder (``cmp-<label>.pem``) so every worker uses the same one; the same slot mechanics
as the OCSP responder (``signer.issuance.responder``). Clients validate it against the chain.

What it signs: only a DER ``ProtectedPart`` (RFC 4210 5.1.3) that decodes exactly, whose body
is an answer (ip, cp, kup, rp, pkiconf, genp, error) and whose header names this certificate:
sender = its subject, senderKID = its key identifier, protectionAlg = its key's algorithm. The
signature is verified with the public key before it leaves the worker.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ObjectIdentifier

from signer.errors import ErrorKind, SignerError
from signer.issuance import responder
from signer.issuance.issuer import Issuer
from signer.issuance.keys import PublicKey, RecordingKey
from signer.protocol import CmpRequest

log = logging.getLogger("signer.cmp")
ANSWERS = frozenset({"ip", "cp", "kup", "rp", "pkiconf", "genp", "error"})
ID_KP_CMC_RA = ObjectIdentifier("1.3.6.1.5.5.7.3.28")
ALGORITHMS = {  # (key kind, hash) → signature algorithm OID
    ("ec", 256): "1.2.840.10045.4.3.2",
    ("ec", 384): "1.2.840.10045.4.3.3",
    ("rsa", 256): "1.2.840.113549.1.1.11",
}


def algorithm_oid(key: PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ALGORITHMS[("ec", 384 if key.curve.key_size >= 384 else 256)]
    return ALGORITHMS[("rsa", 256)]


def cmp_subject(issuer: x509.Name) -> x509.Name:
    """The issuer's name with "CMP Server" added to its common name."""
    rdns = []
    for rdn in issuer.rdns:
        attrs = [
            x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{a.value} CMP Server")
            if a.oid == x509.NameOID.COMMON_NAME
            else a
            for a in rdn
        ]
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def issue_certificate(issuer: Issuer, key: PublicKey, now: float, days: int) -> x509.Certificate:
    """Build the CMP server certificate, sign it with the issuer key, release it verified."""
    from signer.issuance import verify

    start = dt.datetime.fromtimestamp(now, dt.UTC).replace(microsecond=0)
    not_after = min(start + dt.timedelta(days=days), issuer.certificate.not_valid_after_utc)
    if not_after <= start:
        raise SignerError(ErrorKind.NO_RESPONDER, f"issuer {issuer.name} has expired")
    ku = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder()
        .issuer_name(issuer.subject)
        .subject_name(cmp_subject(issuer.subject))
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - responder.BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ku, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ID_KP_CMC_RA]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(issuer.authority_key_identifier(), critical=False)
        .sign(issuer.key, issuer.hash_algorithm)
    )
    verify.released(
        issuer,
        issuer.key.take_signed(),
        cert.signature,
        cert.public_bytes(serialization.Encoding.DER),
    )
    return cert


def acceptable(cert: x509.Certificate, issuer: Issuer, key: PublicKey) -> str | None:
    """Why a stored certificate may not serve as the CMP server's (None: it may)."""
    try:
        cert.verify_directly_issued_by(issuer.certificate)
    except (InvalidSignature, ValueError, TypeError):
        return "not issued by the active issuer"
    if cert.public_key() != key:
        return "not for the CMP key on the token"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "lacks the CMP extended key usage"
    return None if ID_KP_CMC_RA in eku else "not a CMP server certificate"


class CmpSlot(responder.ResponderSlot):
    """The CMP key and its current certificate: the OCSP responder slot's state file, lock and
    renewal, with this module's profile and checks."""

    def __init__(
        self, issuer: Issuer, key: RecordingKey, state_dir: Path, days: int, label: str
    ) -> None:
        super().__init__(issuer, key, state_dir, days)
        self.path = state_dir / f"cmp-{label}.pem"

    issue = staticmethod(issue_certificate)
    accept = staticmethod(acceptable)


class CmpSigner:
    """What a worker holds: the slot; ``handle`` answers one ``cmp`` item."""

    def __init__(self, slot: CmpSlot) -> None:
        self.slot = slot

    def handle(self, req: CmpRequest, now: float) -> bytes:
        self.slot.refresh(now)
        current = self.slot.usable(now)
        cert = current.certificate
        if req.part is None:
            return cert.public_bytes(serialization.Encoding.DER)
        check_part(req.part, cert)
        key = self.slot.key
        public = key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            signature = key.sign(req.part, ec.ECDSA(current.hash_algorithm))  # type: ignore[call-arg]
            try:
                public.verify(signature, req.part, ec.ECDSA(current.hash_algorithm))
            except InvalidSignature as exc:
                raise SignerError(ErrorKind.INTERNAL, "CMP signature does not verify") from exc
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            signature = key.sign(req.part, padding.PKCS1v15(), current.hash_algorithm)  # type: ignore[call-arg]
            try:
                public.verify(signature, req.part, padding.PKCS1v15(), current.hash_algorithm)
            except InvalidSignature as exc:
                raise SignerError(ErrorKind.INTERNAL, "CMP signature does not verify") from exc
        return signature


def check_part(part: bytes, cert: x509.Certificate) -> None:
    """Refuse anything but a CMP answer's ProtectedPart naming this certificate. (pyasn1 is
    imported here, at the first CMP answer: it costs a worker 0.3 s to start with.)"""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.error import PyAsn1Error
    from pyasn1_alt_modules import rfc5280, rfc9480

    try:
        value, rest = decoder.decode(part, asn1Spec=rfc9480.ProtectedPart())
    except (PyAsn1Error, ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
        raise SignerError(ErrorKind.BAD_REQUEST, "not a CMP ProtectedPart") from exc
    if rest or encoder.encode(value) != part:
        raise SignerError(ErrorKind.BAD_REQUEST, "not a DER CMP ProtectedPart")
    header = value["header"]
    if value["body"].getName() not in ANSWERS:
        raise SignerError(ErrorKind.BAD_REQUEST, "the CMP key signs answers only")
    sender = header["sender"]
    name = rfc5280.Name()
    if sender.getName() != "directoryName":
        raise SignerError(ErrorKind.BAD_REQUEST, "sender must be the CMP certificate's subject")
    name["rdnSequence"] = sender["directoryName"]["rdnSequence"]
    if encoder.encode(name) != cert.subject.public_bytes():
        raise SignerError(ErrorKind.BAD_REQUEST, "sender must be the CMP certificate's subject")
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    if not header["senderKID"].isValue or bytes(header["senderKID"]) != ski:
        raise SignerError(ErrorKind.BAD_REQUEST, "senderKID must be the CMP key's identifier")
    alg = header["protectionAlg"]
    if not alg.isValue or str(alg["algorithm"]) != algorithm_oid(cert.public_key()):
        raise SignerError(ErrorKind.BAD_REQUEST, "protectionAlg must be the CMP key's")
