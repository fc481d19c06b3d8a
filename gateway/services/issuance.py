"""Issuance: an application (or a checked renewal) becomes a stored, signed certificate.

``IssuanceService.issue`` is the whole pipeline, read top to bottom:

1. plan: issuer, subject (from the registration, or the renewed certificate), random serial,
   validity from the injected clock;
2. persist intent: in one transaction, check the one-valid-certificate rule under a lock on the
   subscriber, record the terms acceptance and write a *pending* row (committed);
3. sign: ask the signer with a deadline; on failure the row becomes *failed* and the client
   gets 503 ``signer_unavailable`` with Retry-After;
4. persist: DER + status issued (+ the renewal link) + audit event in one transaction;
5. answer with the stored row, so nothing is returned that is not in the database.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import UTC, timedelta
from typing import Any, Protocol

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from db import audit
from db.queries import certificates as cert_q
from db.queries import subscribers as sub_q
from gateway import terms
from gateway.csr import CheckedCsr, CsrError, parse_csr
from gateway.errors import ApiError, Kind
from gateway.keys import Clock
from gateway.services.issuers import IssuerRegistry
from signer.errors import ErrorKind, SignerError
from signer.protocol import CrlRequest, IssueRequest, OcspRequest, Result

log = logging.getLogger("gateway.issuance")
USAGES = ("signing", "encryption")
SIGN_DEADLINE_SECONDS = 10.0
RETRY_AFTER_SECONDS = 10
PENDING_TIMEOUT = timedelta(minutes=10)  # older pending rows are abandoned applications
OID_C, OID_O, OID_OU, OID_CN = "2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.3"


class SignerOps(Protocol):
    """What the gateway uses of ``signer.client.SignerClient``."""

    async def issue(self, request: IssueRequest, deadline: float | None = None) -> bytes: ...
    async def sign_crl(self, request: CrlRequest, deadline: float | None = None) -> bytes: ...
    async def sign_ocsp(self, requests: list[OcspRequest], deadline: float | None = None
                        ) -> list[Result]: ...


def signer_unavailable(message: str = "the signing service is unavailable; try again later"
                       ) -> ApiError:
    return ApiError(Kind.SIGNER_UNAVAILABLE, message,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def csr_error(exc: CsrError) -> ApiError:
    return ApiError(Kind(exc.code), exc.message)


def check_terms(version: object) -> str:
    if version != terms.VERSION:
        raise ApiError(Kind.TERMS_NOT_ACCEPTED,
                       f"accept the current terms of use (version {terms.VERSION}) first")
    return terms.VERSION


def new_serial() -> int:
    """127 random bits with the top bit set: positive, always 32 hex digits, no leading zero."""
    return secrets.randbits(126) | (1 << 126)


def subject_of_registration(s: sub_q.Subscriber) -> tuple[tuple[str, str], ...]:
    """C, O, OU(s), CN in that order, one attribute per RDN."""
    pairs = [(OID_C, s.subject_c or "TW")]
    if s.subject_o:
        pairs.append((OID_O, s.subject_o))
    pairs.extend((OID_OU, ou) for ou in s.subject_ou if ou)
    pairs.append((OID_CN, s.subject_cn))
    return tuple(pairs)


def subject_of_certificate(cert: x509.Certificate) -> tuple[tuple[str, str], ...]:
    return tuple((a.oid.dotted_string, str(a.value)) for rdn in cert.subject.rdns for a in rdn)


def rfc4514(pairs: tuple[tuple[str, str], ...]) -> str:
    return x509.Name([x509.RelativeDistinguishedName(
        [x509.NameAttribute(x509.ObjectIdentifier(oid), value)]) for oid, value in pairs
    ]).rfc4514_string()


def spki_sha256(spki: bytes) -> bytes:
    return hashlib.sha256(spki).digest()


class IssuanceService:
    def __init__(self, *, pool: asyncpg.Pool, signer: Any, issuers: IssuerRegistry,
                 clock: Clock, validity_days: int) -> None:
        self.pool = pool
        self.signer: SignerOps = signer
        self.issuers = issuers
        self.clock = clock
        self.validity = timedelta(days=validity_days)

    async def apply(self, *, account_id: int, usage: object, csr_text: object,
                    terms_version: object) -> cert_q.CertificateRow:
        """Validate a new application, then issue."""
        if usage not in USAGES:
            raise ApiError(Kind.INVALID_FIELD, 'usage must be "signing" or "encryption"',
                           field="usage")
        async with self.pool.acquire() as conn:
            view = await sub_q.view_by_account_id(conn, account_id)
        if view is None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in first")
        if usage not in view.subscriber.usages:
            raise ApiError(Kind.USAGE_NOT_ALLOWED,
                           f"your registration does not include {usage} certificates")
        version = check_terms(terms_version)
        try:
            csr = parse_csr(csr_text)
        except CsrError as exc:
            raise csr_error(exc) from None
        return await self.issue(view=view, usage=str(usage), csr=csr, terms_version=version)

    async def issue(self, *, view: sub_q.SubscriberView, usage: str, csr: CheckedCsr,
                    terms_version: str, renewal_of: cert_q.CertificateRow | None = None
                    ) -> cert_q.CertificateRow:
        """The pipeline; the inputs are checked already (see the module docstring)."""
        # 1. plan
        issuer = self.issuers.active
        if issuer is None or issuer.name not in self.issuers.ids:
            raise signer_unavailable("no active issuing CA is configured")
        if renewal_of is not None:
            assert renewal_of.der is not None
            subject = subject_of_certificate(x509.load_der_x509_certificate(renewal_of.der))
        else:
            subject = subject_of_registration(view.subscriber)
        serial = new_serial()
        now = self.clock().astimezone(UTC).replace(microsecond=0)
        not_before, not_after = now, now + self.validity
        account = view.account.account

        # 2. persist intent: a committed pending row before anything is signed
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM subscribers WHERE id = $1 FOR UPDATE",
                               view.subscriber.id)
            blocking = await cert_q.blocking_certificate(
                conn, subscriber_id=view.subscriber.id, usage=usage, now=now,
                pending_since=now - PENDING_TIMEOUT,
                exclude_id=renewal_of.id if renewal_of else None,
            )
            if blocking is not None:
                raise ApiError(Kind.ALREADY_HAS_VALID,
                               f"you already hold a valid {usage} certificate (or one is "
                               "being issued)")
            await conn.execute(
                """INSERT INTO terms_acceptances (account_id, terms_version, accepted_at)
                   VALUES ($1, $2, $3) ON CONFLICT (account_id, terms_version) DO NOTHING""",
                view.account.id, terms_version, now,
            )
            cert_id = await cert_q.insert_pending(
                conn, serial=format(serial, "x"), issuer_id=self.issuers.ids[issuer.name],
                subscriber_id=view.subscriber.id, usage=usage, profile=usage,
                subject=rfc4514(subject), public_key_sha256=spki_sha256(csr.spki),
                not_before=not_before, not_after=not_after, terms_version=terms_version,
                now=now,
            )

        # 3. sign on the token, within a deadline
        request = IssueRequest(spki=csr.spki, subject=subject, profile=usage, serial=serial,
                               not_before=int(not_before.timestamp()),
                               not_after=int(not_after.timestamp()), issuer=issuer.name)
        try:
            der = await self.signer.issue(request, time.time() + SIGN_DEADLINE_SECONDS)
            cert = x509.load_der_x509_certificate(der)
            if cert.serial_number != serial or cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) != csr.spki:
                raise SignerError(ErrorKind.INTERNAL, "the signer returned another certificate")
        except (SignerError, ValueError) as exc:
            kind = getattr(exc, "kind", ErrorKind.INTERNAL)
            async with self.pool.acquire() as conn:
                await cert_q.mark_failed(conn, cert_id, f"{kind.value}: {exc}")
            log.warning("issuance failed", extra={"serial": format(serial, "x"),
                                                  "signer_error": kind.value})
            if kind is ErrorKind.WEAK_KEY:
                raise ApiError(Kind.WEAK_KEY, "the signer refused this key") from None
            raise signer_unavailable() from None

        # 4. persist the certificate, its renewal link and the audit event together
        async with self.pool.acquire() as conn, conn.transaction():
            ok = await cert_q.mark_issued(
                conn, cert_id, der=der, subject=cert.subject.rfc4514_string(),
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                now=self.clock(),
            )
            if not ok:  # swept as abandoned meanwhile: never hand out an unrecorded row
                raise signer_unavailable("the application timed out; apply again")
            details: dict[str, Any] = {"id": cert_id, "usage": usage, "issuer": issuer.name,
                                       "key": csr.key_description}
            if renewal_of is not None:
                if not await cert_q.link_renewal(conn, old_id=renewal_of.id, new_id=cert_id):
                    raise ApiError(Kind.NOT_RENEWABLE, "this certificate was renewed already")
                details["renewed_serial"] = renewal_of.serial
            await audit.append(
                conn, actor=account,
                action="certificate_renewed" if renewal_of else "certificate_issued",
                target=format(serial, "x"), details=details, at=self.clock(),
            )

        # 5. answer with what is stored
        async with self.pool.acquire() as conn:
            row = await cert_q.issued_by_id(conn, cert_id)
        assert row is not None
        return row

    async def sweep_abandoned(self) -> int:
        async with self.pool.acquire() as conn:
            return await cert_q.fail_stale_pending(
                conn, created_before=self.clock() - PENDING_TIMEOUT
            )
