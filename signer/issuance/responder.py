"""Delegated OCSP responders: the keys that sign OCSP answers, and their short-lived certificates.

An issuing CA key signs certificates and CRLs only. OCSP answers are signed by a responder key
of that issuer on the online token (made by the key ceremony, ``ocsp_key_label`` in the
manifest) whose certificate the issuer signs here, under a fixed internal profile no request can
ask for: end entity, digitalSignature, extended key usage id-kp-OCSPSigning and
id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2), valid ``[signer] ocsp_responder_validity_days``.

The current certificate of each issuer's responder is kept in the signer's state folder
(``<state_dir>/ocsp-<issuer>.pem``) so every worker uses the same one. Before each batch a worker
checks it (``Responders.refresh``): when it has less than a third of its life left, or is
missing, unreadable, not issued by the issuer for the responder key, expired or not yet valid,
the worker first looks whether another worker has already renewed it, and otherwise issues a
new one itself under a file lock. Signing an OCSP answer only ever *uses* a certificate
(``Responders.for_issuer``): one that is not valid at that moment is refused, never used.

Responder certificates are not in the database (the signer has no database and they are not
revocable: ocsp-nocheck, a week at most); every one issued is also kept under
``<state_dir>/ocsp-issued/`` and logged with its serial and fingerprint.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signer.errors import ErrorKind, SignerError
from signer.issuance import verify
from signer.issuance.issuer import Issuer
from signer.issuance.keys import PublicKey, RecordingKey, signature_hash

log = logging.getLogger("signer.responder")

BACKDATE = dt.timedelta(minutes=5)  # relying parties' clocks that run a little behind
RENEW_FRACTION = 1 / 3  # renew when less than this part of the certificate's life is left
STAT_INTERVAL = 1.0  # seconds between looks at the state file for another worker's renewal
RETRY_SECONDS = 10.0  # after a failed renewal (not a token fault), before the next attempt
PEM = serialization.Encoding.PEM


@dataclass
class Responder:
    """One responder certificate and its key: what signs an issuer's OCSP answers.

    It has the attributes the release check needs of a signing identity (``name``, ``key``,
    ``public_key``, ``hash_algorithm``), like ``Issuer``.
    """

    issuer: Issuer
    key: RecordingKey
    certificate: x509.Certificate
    name: str = field(init=False)
    public_key: PublicKey = field(init=False)
    hash_algorithm: hashes.HashAlgorithm = field(init=False)
    not_before: float = field(init=False)
    not_after: float = field(init=False)
    renew_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"{self.issuer.name}-ocsp"
        self.public_key = self.key.public_key()
        self.hash_algorithm = signature_hash(self.public_key)
        self.not_before = self.certificate.not_valid_before_utc.timestamp()
        self.not_after = self.certificate.not_valid_after_utc.timestamp()
        self.renew_at = self.not_after - (self.not_after - self.not_before) * RENEW_FRACTION

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now < self.not_after


def responder_subject(issuer: x509.Name) -> x509.Name:
    """The issuer's name with "OCSP Responder" added to its common name."""
    rdns = []
    for rdn in issuer.rdns:
        attrs = [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{a.value} OCSP Responder")
            if a.oid == NameOID.COMMON_NAME
            else a
            for a in rdn
        ]
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def issue_certificate(
    issuer: Issuer, responder_key: PublicKey, now: float, validity_days: int
) -> x509.Certificate:
    """Build the responder certificate, sign it with the issuer key on the token, and release
    it only when that signature verifies (the same check as every certificate's)."""
    start = dt.datetime.fromtimestamp(now, dt.UTC).replace(microsecond=0)
    not_after = min(
        start + dt.timedelta(days=validity_days), issuer.certificate.not_valid_after_utc
    )
    if not_after <= start:
        raise SignerError(ErrorKind.NO_RESPONDER, f"issuer {issuer.name} has expired")
    builder = (
        x509.CertificateBuilder()
        .issuer_name(issuer.subject)
        .subject_name(responder_subject(issuer.subject))
        .public_key(responder_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(responder_key), critical=False)
        .add_extension(issuer.authority_key_identifier(), critical=False)
    )
    cert = builder.sign(issuer.key, issuer.hash_algorithm)
    der = cert.public_bytes(serialization.Encoding.DER)
    verify.released(issuer, issuer.key.take_signed(), cert.signature, der)
    return cert


def acceptable(cert: x509.Certificate, issuer: Issuer, responder_key: PublicKey) -> str | None:
    """Why a stored certificate may not serve as this issuer's responder (None: it may)."""
    try:
        cert.verify_directly_issued_by(issuer.certificate)
    except (InvalidSignature, ValueError, TypeError):
        return "not issued by the issuer"
    if cert.public_key() != responder_key:
        return "not for the responder key on the token"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "lacks the responder extensions"
    if ExtendedKeyUsageOID.OCSP_SIGNING not in eku or bc.ca:
        return "not an OCSP signing certificate"
    return None


class ResponderSlot:
    """One issuer's responder key and its current certificate, shared through the state file.
    ``issue`` and ``accept`` are the certificate's profile and checks (the CMP key's slot,
    ``signer.cmp_protection``, brings its own)."""

    issue = staticmethod(issue_certificate)
    accept = staticmethod(acceptable)

    def __init__(
        self, issuer: Issuer, key: RecordingKey, state_dir: Path, validity_days: int
    ) -> None:
        self.issuer = issuer
        self.key = key
        self.state_dir = state_dir
        self.path = state_dir / f"ocsp-{issuer.name}.pem"
        self.validity_days = validity_days
        self.current: Responder | None = None
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._next_stat = 0.0
        self.retry_at = 0.0

    # -- the state file ------------------------------------------------------------------------
    def _load_file(self) -> Responder | None:
        try:
            st = self.path.stat()
            self._seen = (st.st_mtime_ns, st.st_size)
            cert = x509.load_pem_x509_certificate(self.path.read_bytes())
        except FileNotFoundError:
            self._seen = None
            return None
        except (OSError, ValueError) as exc:
            log.warning("responder certificate %s unreadable: %s", self.path, exc)
            return None
        why = self.accept(cert, self.issuer, self.key.public_key())
        if why is not None:
            log.warning("responder certificate %s ignored: %s", self.path, why)
            return None
        return Responder(self.issuer, self.key, cert)

    def _changed(self) -> bool:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._seen is not None
        return (st.st_mtime_ns, st.st_size) != self._seen

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(
            self.state_dir / f".ocsp-{self.issuer.name}.lock", os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _store(self, cert: x509.Certificate) -> None:
        pem = cert.public_bytes(PEM)
        archive = self.state_dir / "ocsp-issued"
        archive.mkdir(exist_ok=True, mode=0o700)
        (archive / f"{self.issuer.name}-{cert.serial_number:x}.pem").write_bytes(pem)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)

    # -- what workers call -----------------------------------------------------------------------
    def _due(self, now: float) -> bool:
        cur = self.current
        return cur is None or not cur.valid_at(now) or now >= cur.renew_at

    def refresh(self, now: float) -> None:
        """Adopt another worker's renewal, or renew when due. Token faults propagate."""
        if now >= self._next_stat:
            self._next_stat = now + STAT_INTERVAL
            if self._changed():
                self.current = self._load_file()
        if not self._due(now):
            return
        with self._locked():
            self.current = self._load_file()  # another worker may have renewed meanwhile
            if not self._due(now):
                return
            cert = self.issue(self.issuer, self.key.public_key(), now, self.validity_days)
            self._store(cert)
            self.current = self._load_file()
        log.info(
            "OCSP responder certificate issued",
            extra={
                "issuer": self.issuer.name,
                "serial": format(cert.serial_number, "x"),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            },
        )

    def usable(self, now: float) -> Responder:
        cur = self.current
        if cur is None or not cur.valid_at(now):
            raise SignerError(
                ErrorKind.NO_RESPONDER,
                f"issuer {self.issuer.name}: no OCSP responder certificate valid now",
            )
        return cur


class Responders:
    """Every issuer's responder slot, as one worker holds them."""

    def __init__(self, slots: dict[str, ResponderSlot]) -> None:
        self.slots = slots

    def refresh(self, now: float) -> None:
        for slot in self.slots.values():
            if now < slot.retry_at:
                continue
            try:
                slot.refresh(now)
            except Exception as exc:
                if isinstance(exc, SignerError) and exc.kind is ErrorKind.TOKEN_UNAVAILABLE:
                    raise  # a token fault: the worker heals
                # the slot keeps its certificate while that is still valid; else OCSP answers
                # of this issuer are refused until a renewal succeeds (tried again shortly,
                # not before every batch)
                slot.retry_at = now + RETRY_SECONDS
                log.error("OCSP responder of %s not renewed: %s", slot.issuer.name, exc)

    def for_issuer(self, name: str, now: float) -> Responder:
        slot = self.slots.get(name)
        if slot is None:
            raise SignerError(ErrorKind.NO_RESPONDER, f"issuer {name!r} has no OCSP responder")
        return slot.usable(now)

    def keys(self) -> list[RecordingKey]:
        return [slot.key for slot in self.slots.values()]
