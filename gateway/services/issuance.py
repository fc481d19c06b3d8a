"""Issuance: an application (or a checked renewal) becomes a stored, signed certificate.

``IssuanceService.issue`` is the whole pipeline, read top to bottom:

1. plan: issuer, subject (from the registration, or the renewed certificate), random serial,
   validity from the injected clock;
2. persist intent: in one transaction, check the one-valid-certificate rule under a lock on the
   subscriber, record the terms acceptance and write a *pending* row (committed); the
   applications in flight in this process share that transaction (``db.batch.Batcher``: the
   subscribers are locked in id order, then one statement checks and inserts for all);
3. sign: ask the signer with a deadline; on failure the row becomes *failed* and the client
   gets 503 ``signer_unavailable`` with Retry-After;
4. persist: DER + status issued (+ the renewal link) + audit event in one transaction, shared
   by the new certificates in flight (one round trip: ``cert_q.issue_batch``);
5. answer with the stored row (the ``RETURNING`` of step 4), so nothing is returned that is not
   in the database.

Retries are safe. A retried application (same subscriber, usage and public key) whose earlier
attempt was stored but never answered (a lost connection, a killed gateway) gets that stored
certificate back (``replayed``: the API answers 200 instead of 201); while the earlier attempt
is still pending it gets a retryable 503. A batch whose commit outcome is unknown is looked up
before it is retried (``Batcher(check=...)``), so neither step writes twice nor answers "apply
again" for a row that was issued. A pending row whose signing deadline has passed
(``PENDING_EXPIRY``) is failed by the sweep (``[gateway] pending_sweep_seconds``), which
unblocks the subscriber's next application.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import time
from datetime import UTC, timedelta
from typing import Any

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from db import audit
from db.batch import Batcher
from db.queries import certificates as cert_q
from db.queries import subscribers as sub_q
from gateway import terms
from gateway.clock import Clock
from gateway.csr import CheckedCsr, CsrError, parse_csr
from gateway.errors import ApiError, Kind
from gateway.metrics import GatewayMetrics, key_label
from gateway.services.issuers import IssuerRegistry
from gateway.signer_errors import retry_headers
from signer.client import SignerOps
from signer.errors import ErrorKind, SignerError
from signer.protocol import IssueRequest
from signer.vocabulary import USAGES

log = logging.getLogger("gateway.issuance")
SIGN_DEADLINE_SECONDS = 10.0
# the signing deadline plus time to store the answer: a row pending longer is abandoned (its
# gateway died or gave up) and the sweep fails it
STORE_GRACE_SECONDS = 5.0
PENDING_EXPIRY = timedelta(seconds=SIGN_DEADLINE_SECONDS + STORE_GRACE_SECONDS)
# backstop when no sweep runs: older pending rows do not block a new application
PENDING_TIMEOUT = timedelta(minutes=10)
BATCH_MAX = 128  # applications per database transaction (steps 2 and 4)
# transactions of each step in flight per process: the next batch gathers while one commits
# (2 measured no better under bench-e2e)
BATCH_INFLIGHT = 1
OID_C, OID_O, OID_OU, OID_CN = "2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.3"


def signer_unavailable(
    message: str = "the signing service is unavailable; try again later",
) -> ApiError:
    return ApiError(Kind.SIGNER_UNAVAILABLE, message, headers=retry_headers())


def csr_error(exc: CsrError) -> ApiError:
    return ApiError(Kind(exc.code), exc.message)


def check_terms(version: object) -> str:
    if version != terms.VERSION:
        raise ApiError(
            Kind.TERMS_NOT_ACCEPTED,
            f"accept the current terms of use (version {terms.VERSION}) first",
        )
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
    return x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(x509.ObjectIdentifier(oid), value)])
            for oid, value in pairs
        ]
    ).rfc4514_string()


def spki_sha256(spki: bytes) -> bytes:
    return hashlib.sha256(spki).digest()


class IssuanceService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        signer: SignerOps,
        issuers: IssuerRegistry,
        clock: Clock,
        validity_days: int,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.signer = signer
        self.issuers = issuers
        self.clock = clock
        self.validity = timedelta(days=validity_days)
        # group commit of steps 2 and 4 across the requests in flight in this process
        self._intents: Batcher[cert_q.Intent, int | cert_q.CertificateRow] = Batcher(
            self._flush_intents,
            max_items=BATCH_MAX,
            max_inflight=BATCH_INFLIGHT,
            name="pending-row batch",
            check=self._check_intents,
        )
        self._issued: Batcher[cert_q.Issued, cert_q.CertificateRow] = Batcher(
            self._flush_issued,
            max_items=BATCH_MAX,
            max_inflight=BATCH_INFLIGHT,
            name="issued-row batch",
            check=self._check_issued,
        )

    async def apply(
        self,
        *,
        account_id: int,
        usage: object,
        csr_text: object,
        terms_version: object,
        view: sub_q.SubscriberView | None = None,
    ) -> cert_q.CertificateRow:
        """Validate a new application, then issue. ``view``: the subscriber as loaded with the
        session in this request (else it is loaded here)."""
        if usage not in USAGES:
            raise ApiError(
                Kind.INVALID_FIELD, 'usage must be "signing" or "encryption"', field="usage"
            )
        if view is None or view.account.id != account_id:
            async with self.pool.acquire() as conn:
                view = await sub_q.view_by_account_id(conn, account_id)
        if view is None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in first")
        if usage not in view.subscriber.usages:
            raise ApiError(
                Kind.USAGE_NOT_ALLOWED, f"your registration does not include {usage} certificates"
            )
        version = check_terms(terms_version)
        try:
            csr = parse_csr(csr_text)
        except CsrError as exc:
            raise csr_error(exc) from None
        return await self.issue(view=view, usage=str(usage), csr=csr, terms_version=version)

    async def issue(
        self,
        *,
        view: sub_q.SubscriberView,
        usage: str,
        csr: CheckedCsr,
        terms_version: str,
        renewal_of: cert_q.CertificateRow | None = None,
        protocol: str | None = None,
    ) -> cert_q.CertificateRow:
        """The pipeline (inputs checked already), timed and counted for the dashboards.
        ``protocol``: the enrolment protocol other than the portal/JSON API (``"cmp"``),
        recorded in the audit event's details."""
        t0 = time.perf_counter()
        try:
            row = await self._issue(
                view=view,
                usage=usage,
                csr=csr,
                terms_version=terms_version,
                renewal_of=renewal_of,
                protocol=protocol,
            )
        except (ApiError, SignerError) as exc:
            if self.metrics is not None and (
                isinstance(exc, SignerError) or exc.kind is Kind.SIGNER_UNAVAILABLE
            ):
                self.metrics.signer_errors.labels(kind="unavailable").inc()
            raise
        if self.metrics is not None and not row.replayed:
            operation = "issue" if renewal_of is None else "renew"
            self.metrics.issuance_latency.labels(operation=operation).observe(
                time.perf_counter() - t0
            )
            self.metrics.certificates_issued.labels(
                profile=usage, key=key_label(csr.public_key)
            ).inc()
        return row

    async def _issue(
        self,
        *,
        view: sub_q.SubscriberView,
        usage: str,
        csr: CheckedCsr,
        terms_version: str,
        renewal_of: cert_q.CertificateRow | None,
        protocol: str | None = None,
    ) -> cert_q.CertificateRow:
        """The pipeline; see the module docstring."""
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
        subject_text = rfc4514(subject)

        # 2. persist intent: a committed pending row before anything is signed (one
        # transaction for the applications in flight: see _flush_intents)
        got = await self._intents.submit(
            cert_q.Intent(
                subscriber_id=view.subscriber.id,
                account_id=view.account.id,
                usage=usage,
                exclude_id=renewal_of.id if renewal_of else None,
                serial=format(serial, "x"),
                issuer_id=self.issuers.ids[issuer.name],
                profile=usage,
                subject=subject_text,
                public_key_sha256=spki_sha256(csr.spki),
                not_before=not_before,
                not_after=not_after,
                terms_version=terms_version,
                now=now,
                pending_since=now - PENDING_TIMEOUT,
            )
        )  # raises the item's own error (e.g. 409 already_has_valid)
        if isinstance(got, cert_q.CertificateRow):
            return got  # a retry of an application that was issued: its stored certificate
        cert_id = got

        # 3. sign on the token, within a deadline
        request = IssueRequest(
            spki=csr.spki,
            subject=subject,
            profile=usage,
            serial=serial,
            not_before=int(not_before.timestamp()),
            not_after=int(not_after.timestamp()),
            issuer=issuer.name,
        )
        try:
            der = await self.signer.issue(request, time.time() + SIGN_DEADLINE_SECONDS)
            cert = x509.load_der_x509_certificate(der)
            if (
                cert.serial_number != serial
                or cert.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                != csr.spki
            ):
                raise SignerError(ErrorKind.INTERNAL, "the signer returned another certificate")
        except (SignerError, ValueError) as exc:
            failure = (
                exc
                if isinstance(exc, SignerError)
                else SignerError(
                    ErrorKind.INTERNAL, f"the signer's certificate does not parse: {exc}"
                )
            )
            async with self.pool.acquire() as conn:
                await cert_q.mark_failed(conn, cert_id, f"{failure.kind.value}: {exc}")
            log.warning(
                "issuance failed",
                extra={"serial": format(serial, "x"), "signer_error": failure.kind.value},
            )
            raise failure from None  # answered by gateway.signer_errors at the web edge

        # 4. persist the certificate, its renewal link and the audit event together
        details: dict[str, Any] = {
            "id": cert_id,
            "usage": usage,
            "issuer": issuer.name,
            "key": csr.key_description,
        }
        if protocol is not None:
            details["protocol"] = protocol
        issued = cert_q.Issued(
            id=cert_id,
            der=der,
            subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            event=audit.NewEvent(
                actor=account,
                action="certificate_issued",
                target=format(serial, "x"),
                details=details,
            ),
        )
        if renewal_of is None:
            # 5. answer with what is stored (the rows the batch returns)
            return await self._issued.submit(issued)

        async with self.pool.acquire() as conn, conn.transaction():
            ok = await cert_q.mark_issued(
                conn,
                cert_id,
                der=der,
                subject=issued.subject,
                not_before=issued.not_before,
                not_after=issued.not_after,
                now=self.clock(),
            )
            if not ok:  # swept as abandoned meanwhile: never hand out an unrecorded row
                raise signer_unavailable("the application timed out; apply again")
            if not await cert_q.link_renewal(conn, old_id=renewal_of.id, new_id=cert_id):
                raise ApiError(Kind.NOT_RENEWABLE, "this certificate was renewed already")
            details["renewed_serial"] = renewal_of.serial
            # 5. answer with what is stored
            row = await cert_q.issued_by_id(conn, cert_id)
            await audit.append(
                conn,
                actor=account,
                action="certificate_renewed",
                target=issued.event.target,
                details=details,
                at=self.clock(),
            )
        assert row is not None
        return row

    async def _flush_intents(
        self, intents: list[cert_q.Intent]
    ) -> list[int | cert_q.CertificateRow | BaseException]:
        """Step 2 for a batch, one round trip that commits: lock the subscribers (id order),
        then one statement checks the one-valid-certificate rule for all, records the terms and
        writes the pending rows (``cert_q.apply_batch``). Intents it blocked are looked at
        (one more round trip, only then): a retry of an issued application gets its stored
        certificate, a retry of one still pending a retryable 503, anything else 409."""
        async with self.pool.acquire() as conn:
            ids = await cert_q.apply_batch(conn, intents)
            blocked = [i for i in intents if i.serial not in ids]
            found = await cert_q.blockers(conn, blocked) if blocked else []
            blocking = dict(zip((i.serial for i in blocked), found, strict=True))
            same = [
                b.id
                for i, b in zip(blocked, found, strict=True)
                if b is not None
                and b.status == "issued"
                and b.public_key_sha256 == i.public_key_sha256
                and i.exclude_id is None
            ]
            stored = await cert_q.issued_by_ids(conn, same) if same else {}
        out: list[int | cert_q.CertificateRow | BaseException] = []
        for i in intents:
            cert_id = ids.get(i.serial)
            if cert_id is not None:
                out.append(cert_id)
                continue
            b = blocking[i.serial]
            if b is not None and b.id in stored:
                out.append(dataclasses.replace(stored[b.id], replayed=True))
            elif b is None or (
                b.status == "pending" and b.public_key_sha256 == i.public_key_sha256
            ):
                # still in flight, or what blocked it was swept meanwhile: retryable
                out.append(
                    signer_unavailable(
                        "an earlier application with this key is still being processed; "
                        "try again shortly"
                    )
                )
            else:
                out.append(
                    ApiError(
                        Kind.ALREADY_HAS_VALID,
                        f"you already hold a valid {i.usage} certificate (or one is being issued)",
                    )
                )
        return out

    async def _check_intents(self, intents: list[cert_q.Intent]) -> list[int | None]:
        """After a step-2 batch failed: the pending rows it committed anyway (by serial)."""
        async with self.pool.acquire() as conn:
            ids = await cert_q.ids_by_serial(conn, [i.serial for i in intents])
        return [ids.get(i.serial) for i in intents]

    async def _check_issued(self, items: list[cert_q.Issued]) -> list[cert_q.CertificateRow | None]:
        """After a step-4 batch failed: the rows it committed as issued anyway."""
        async with self.pool.acquire() as conn:
            rows = await cert_q.issued_by_ids(conn, [i.id for i in items])
        return [rows.get(i.id) for i in items]

    async def _flush_issued(
        self, items: list[cert_q.Issued]
    ) -> list[cert_q.CertificateRow | BaseException]:
        """Step 4 for a batch, one round trip that commits: the rows become issued and the
        audit events are appended under one advisory lock (``cert_q.issue_batch``)."""
        async with self.pool.acquire() as conn:
            rows = await cert_q.issue_batch(conn, items, self.clock())
            by_id = {r.id: r for r in rows}
            missing = [i.id for i in items if i.id not in by_id]
            if missing:  # no longer pending: issued by an earlier attempt, or swept
                by_id.update(await cert_q.issued_by_ids(conn, missing))
        # swept as abandoned meanwhile: never hand out an unrecorded row
        return [
            by_id.get(i.id) or signer_unavailable("the application timed out; apply again")
            for i in items
        ]

    async def sweep_abandoned(self) -> int:
        """Fail pending rows past their signing deadline (``PENDING_EXPIRY``); see the module
        docstring. Runs every ``[gateway] pending_sweep_seconds`` (lifecycle)."""
        async with self.pool.acquire() as conn:
            n = await cert_q.fail_stale_pending(conn, created_before=self.clock() - PENDING_EXPIRY)
        if n:
            log.warning("failed %d pending applications past their signing deadline", n)
        return n
