"""The CMP server (RFC 4210/9480, Lightweight CMP Profile RFC 9483): one request in, one
protected answer out, every certificate through the portal's issuance pipeline.

``CmpServer.handle`` reads top to bottom:

1. decode (badDataFormat, unsupportedVersion, badRequest);
2. time: messageTime within ``max_skew`` (badTime);
3. replay: a (transactionID, senderNonce) pair seen within the window, or a new request whose
   transactionID is in use (transactionIdInUse);
4. protection: a password-based MAC with the reference's one-time enrolment secret (``ir``,
   ``cr``, ``p10cr``, their ``certConf``, ``genm``) or a signature by a certificate this CA
   issued and still holds valid (``kur``, ``rr``, their ``certConf``, ``genm``); anything else
   is badMessageCheck / notAuthorized. Only now is the nonce recorded;
5. the body: enrol, renew, revoke, confirm, general message;
6. the answer, protected like the request: the same secret's MAC, or the CMP server
   certificate's signature (``gateway.cmp.signing``). Errors found after step 4 are protected
   too; before it they go out unprotected (``openssl cmp -unprotected_errors``) or signed.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc9480

from db.queries import certificates as cert_q
from db.queries import cmp as cmp_q
from db.queries import subscribers as sub_q
from gateway import terms
from gateway.clock import Clock
from gateway.cmp import messages, protection
from gateway.cmp.failures import CmpFailure
from gateway.cmp.metrics import CmpMetrics
from gateway.csr import CheckedCsr, CsrError, check_key, parse_csr
from gateway.errors import ApiError, Kind
from gateway.services.cert_status import status as cert_status
from gateway.services.issuance import IssuanceService, spki_sha256
from gateway.services.issuers import IssuerRegistry
from gateway.services.revocation import RevocationService
from signer.errors import SignerError
from signer.vocabulary import REASON_CODES, REQUESTED_REASONS, USAGES

log = logging.getLogger("gateway.cmp")
NEW_TRANSACTION = ("ir", "cr", "p10cr", "kur", "rr", "genm")
MAC_BODIES = ("ir", "cr", "p10cr", "certConf", "genm")
SIGNED_BODIES = ("kur", "rr", "certConf", "genm")
ANSWER = {"ir": "ip", "cr": "cp", "p10cr": "cp", "kur": "kup"}
# CRLReason values a subscriber may give in rr: those of a revocation request, but for
# privilegeWithdrawn, which is the RA's to state
SUBSCRIBER_REASONS = {REASON_CODES[r]: r for r in REQUESTED_REASONS if r != "privilegeWithdrawn"}
TRANSACTION_KEEP = timedelta(days=1)
ERROR_KINDS = {
    Kind.ALREADY_HAS_VALID: "badRequest",
    Kind.WEAK_KEY: "badCertTemplate",
    Kind.BAD_CSR: "badDataFormat",
    Kind.POP_FAILED: "badPOP",
    Kind.NOT_RENEWABLE: "notAuthorized",
    Kind.KEY_REUSE: "badCertTemplate",
    Kind.USAGE_NOT_ALLOWED: "notAuthorized",
    Kind.ALREADY_REVOKED: "certRevoked",
    Kind.SIGNER_UNAVAILABLE: "systemUnavail",
}


class ResponseSigner(Protocol):
    """Signs answers to signature-protected requests with the CMP server certificate."""

    async def certificate(self) -> tuple[rfc5280.AlgorithmIdentifier, bytes]: ...
    async def sign(self, protected_part: bytes) -> bytes: ...


@dataclass
class Exchange:
    """What one request has established so far: how its answer is protected."""

    request: messages.Request | None = None
    secret: bytes | None = None  # MAC with this secret
    pbm: protection.PbmParams | None = None
    signed: bool = False  # the request was signature-protected: sign the answer
    sender_cert: x509.Certificate | None = None
    sender_row: cert_q.CertificateRow | None = None
    account_id: int | None = None
    secret_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class CmpServer:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        issuance: IssuanceService,
        revocation: RevocationService,
        issuers: IssuerRegistry,
        renewal_window_days: int,
        max_skew_seconds: int,
        replay_window_seconds: int,
        metrics: CmpMetrics | None = None,
        response_signer: ResponseSigner | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.issuance = issuance
        self.revocation = revocation
        self.issuers = issuers
        self.window = timedelta(days=renewal_window_days)
        self.skew = timedelta(seconds=max_skew_seconds)
        self.replay_window = timedelta(seconds=replay_window_seconds)
        self.metrics = metrics
        self.response_signer = response_signer

    # -- the whole exchange ---------------------------------------------------------------

    async def handle(self, der: bytes, profile: str | None) -> bytes:
        """One CMP request → one DER answer; every failure becomes a CMP error message."""
        ex = Exchange()
        body_type = "unknown"
        try:
            ex.request = req = messages.decode(der)
            body_type = req.body_type
            kind, value = await self._serve(ex, req, profile)
            outcome = "ok"
        except CmpFailure as failure:
            if failure.request is not None and ex.request is None:
                ex.request = failure.request
            kind, value, outcome = (
                "error",
                messages.error_content(failure.info, failure.text),
                failure.info,
            )
            log.info("cmp request refused", extra={"failure": failure.info, "reason": failure.text})
        except Exception:  # never an HTTP 500: a CMP error the client can read
            log.exception("cmp request failed")
            kind, value, outcome = (
                "error",
                messages.error_content("systemFailure", "the CMP server failed; try again later"),
                "systemFailure",
            )
        if self.metrics is not None:
            self.metrics.messages.labels(body=body_type, outcome=outcome).inc()
        try:
            return await self._answer(ex, kind, value)
        except Exception:
            log.exception("cmp answer failed")
            return await self._answer(
                Exchange(request=ex.request),
                "error",
                messages.error_content("systemFailure", "the CMP server failed"),
            )

    async def _serve(
        self, ex: Exchange, req: messages.Request, profile: str | None
    ) -> tuple[str, Any]:
        now = self.clock()
        check_profile(profile)
        # 2. time
        if req.message_time is None:
            raise CmpFailure("badTime", "messageTime is missing")
        if abs(req.message_time - now) > self.skew:
            raise CmpFailure("badTime", "messageTime is too far from the server's time")
        # 3. replay (read only: nothing is recorded for a message that is not authentic)
        async with self.pool.acquire() as conn:
            if await cmp_q.seen_nonce(conn, req.transaction_id, req.sender_nonce):
                raise CmpFailure("transactionIdInUse", "this message was received already")
            txn = await cmp_q.transaction(conn, req.transaction_id)
        if req.body_type in NEW_TRANSACTION and txn is not None:
            raise CmpFailure("transactionIdInUse", "this transactionID is in use")
        if req.body_type == "certConf" and txn is None:
            raise CmpFailure("badRequest", "certConf for an unknown transaction")
        # 4. protection
        await self._check_protection(ex, req, txn)
        async with self.pool.acquire() as conn:
            if not await cmp_q.record_nonce(conn, req.transaction_id, req.sender_nonce, now):
                raise CmpFailure("transactionIdInUse", "this message was received already")
        # 5. the body
        try:
            if req.body_type in ("ir", "cr", "p10cr"):
                return await self._enrol(ex, req, profile)
            if req.body_type == "kur":
                return await self._renew(ex, req)
            if req.body_type == "rr":
                return await self._revoke(ex, req)
            if req.body_type == "certConf":
                assert txn is not None
                return await self._confirm(ex, req, txn)
            return "genp", self._general(req)
        except ApiError as exc:
            raise CmpFailure(ERROR_KINDS.get(exc.kind, "badRequest"), exc.message) from None
        except SignerError as exc:
            raise CmpFailure(
                "systemUnavail", f"the signing service failed: {exc.kind.value}"
            ) from None

    # -- protection -----------------------------------------------------------------------

    async def _check_protection(
        self, ex: Exchange, req: messages.Request, txn: cmp_q.Transaction | None
    ) -> None:
        alg, bits = req.protection_alg, req.message["protection"]
        if alg is None or not bits.isValue:
            raise CmpFailure("badMessageCheck", "the request is not protected")
        data = messages.protected_part(req.header, req.message["body"])
        signature = bits.asOctets()
        if protection.is_mac(alg):
            if req.body_type not in MAC_BODIES or (txn is not None and txn.secret_id is None):
                raise CmpFailure(
                    "notAuthorized",
                    f"{req.body_type} must be signed with the "
                    "current certificate's key, not MAC-protected",
                )
            params = protection.PbmParams.of(alg)
            secret = await self._secret_for(ex, req, txn)
            if secret is None or not protection.mac_verifies(params, secret, data, signature):
                raise CmpFailure(
                    "badMessageCheck",
                    "the MAC does not verify (unknown "
                    "reference, used or expired secret, or wrong secret)",
                )
            ex.secret, ex.pbm = secret, params
            return
        if req.body_type not in SIGNED_BODIES or (txn is not None and txn.secret_id is not None):
            raise CmpFailure(
                "notAuthorized",
                f"{req.body_type} needs the one-time enrolment secret (MAC protection)",
            )
        cert = self._sender_certificate(req)
        async with self.pool.acquire() as conn:
            row = await cert_q.issued_by_serial(conn, format(cert.serial_number, "x"))
        if row is None or row.der != cert.public_bytes(serialization.Encoding.DER):
            raise CmpFailure("notAuthorized", "the protecting certificate was not issued here")
        if not protection.signature_verifies(alg, cert, data, signature):
            raise CmpFailure("badMessageCheck", "the signature does not verify")
        ex.signed, ex.sender_cert, ex.sender_row = True, cert, row
        if txn is not None and txn.account_id is not None:  # certConf: the same subscriber
            async with self.pool.acquire() as conn:
                view = await sub_q.view_by_subscriber_id(conn, row.subscriber_id)
            if view is None or view.account.id != txn.account_id:
                raise CmpFailure("notAuthorized", "certConf by another subscriber")

    async def _secret_for(
        self, ex: Exchange, req: messages.Request, txn: cmp_q.Transaction | None
    ) -> bytes | None:
        """The secret the MAC must verify with: the transaction's (certConf), else the open
        secret of the account named by senderKID."""
        now = self.clock()
        async with self.pool.acquire() as conn:
            if txn is not None:
                assert txn.secret_id is not None
                row = await cmp_q.secret_by_id(conn, txn.secret_id)
                ex.account_id, ex.secret_id = txn.account_id, txn.secret_id
            else:
                kid = req.sender_kid or b""
                try:
                    name = kid.decode("utf-8")
                except UnicodeDecodeError:
                    return None
                account = await sub_q.account_by_name(conn, name) if 0 < len(name) <= 64 else None
                if account is None:
                    return None
                row = await cmp_q.open_secret(conn, account.id, now)
                ex.account_id = account.id
                ex.secret_id = row.id if row else None
        if row is None or row.secret is None:
            return None
        return row.secret.encode("utf-8")

    def _sender_certificate(self, req: messages.Request) -> x509.Certificate:
        extra = req.message["extraCerts"]
        if not extra.isValue or len(extra) == 0:
            raise CmpFailure(
                "notAuthorized", "the protecting certificate must be the first of extraCerts"
            )
        try:
            return x509.load_der_x509_certificate(messages.certificate_der(extra[0]))
        except (ValueError, PyAsn1Error, KeyError) as exc:
            raise CmpFailure("badDataFormat", "extraCerts[0] is not an X.509 certificate") from exc

    # -- bodies ---------------------------------------------------------------------------

    def _requested(self, req: messages.Request) -> tuple[int, CheckedCsr]:
        """The one certificate request of ir/cr/kur, its POP checked, or a p10cr's CSR."""
        if req.body_type == "p10cr":
            plain = rfc9480.CertificationRequest()  # the body's value is [4]-tagged
            messages.fill(plain, req.body)
            der = encoder.encode(plain)
            try:
                csr = parse_csr(serialization_b64(der))
            except CsrError as exc:
                raise ApiError(Kind(exc.code), exc.message) from None
            return -1, csr
        msgs = req.body
        if len(msgs) != 1:
            raise CmpFailure("badRequest", "exactly one certificate request per message")
        msg = msgs[0]
        cert_req = msg["certReq"]
        req_id = int(cert_req["certReqId"])
        template = cert_req["certTemplate"]
        if not template["publicKey"].isValue:
            raise CmpFailure(
                "badCertTemplate",
                "the template needs the public key (keys "
                "are made by the subscriber, never by the CA)",
            )
        spki = messages.spki_der(template["publicKey"])
        try:
            key = serialization.load_der_public_key(spki)
        except (ValueError, TypeError) as exc:
            raise CmpFailure("badCertTemplate", "the public key is not supported") from exc
        try:
            checked = check_key(key)
        except CsrError as exc:
            raise CmpFailure("badCertTemplate", exc.message) from None
        popo = msg["popo"]
        if not popo.isValue or popo.getName() != "signature":
            raise CmpFailure("badPOP", "proof of possession must be a signature by the key")
        pop = popo["signature"]
        if pop["poposkInput"].isValue:
            raise CmpFailure("badPOP", "poposkInput is not used (the template names the key)")
        if not protection.pop_verifies(
            pop["algorithmIdentifier"],
            checked,
            encoder.encode(cert_req),
            pop["signature"].asOctets(),
        ):
            raise CmpFailure("badPOP", "the proof-of-possession signature does not verify")
        spki_norm = checked.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return req_id, CheckedCsr(der=encoder.encode(cert_req), spki=spki_norm, public_key=checked)

    async def _enrol(
        self, ex: Exchange, req: messages.Request, profile: str | None
    ) -> tuple[str, Any]:
        usage = profile or "signing"
        assert ex.account_id is not None and ex.secret_id is not None
        req_id, csr = self._requested(req)
        now = self.clock()
        async with self.pool.acquire() as conn:
            view = await sub_q.view_by_account_id(conn, ex.account_id)
        if view is None:
            raise CmpFailure("notAuthorized", "unknown reference")
        if usage not in view.subscriber.usages:
            raise CmpFailure(
                "notAuthorized", f"the registration does not include {usage} certificates"
            )
        async with self.pool.acquire() as conn, conn.transaction():
            if not await cmp_q.use_secret(conn, ex.secret_id, now):
                raise CmpFailure("badMessageCheck", "the enrolment secret was used already")
            if not await cmp_q.start_transaction(
                conn,
                transaction_id=req.transaction_id,
                account_id=ex.account_id,
                secret_id=ex.secret_id,
                now=now,
            ):
                raise CmpFailure("transactionIdInUse", "this transactionID is in use")
        try:
            row = await self.issuance.issue(
                view=view, usage=usage, csr=csr, terms_version=terms.VERSION, protocol="cmp"
            )
        except BaseException:
            async with self.pool.acquire() as conn:  # nothing issued: the secret stays usable
                await cmp_q.release_secret(conn, ex.secret_id, req.transaction_id)
            raise
        return await self._issued(ex, req, row, req_id)

    async def _issued(
        self, ex: Exchange, req: messages.Request, row: cert_q.CertificateRow, req_id: int
    ) -> tuple[str, Any]:
        assert row.der is not None
        implicit = req.implicit_confirm
        async with self.pool.acquire() as conn:
            await cmp_q.set_certificate(
                conn,
                req.transaction_id,
                certificate_id=row.id,
                cert_req_id=req_id,
                done=implicit,
                now=self.clock(),
            )
            if implicit and ex.secret_id is not None:
                await cmp_q.wipe_secret(conn, ex.secret_id)
        ex.extra["implicit_confirm"] = implicit
        if self.metrics is not None:
            self.metrics.certificates.labels(operation=req.body_type).inc()
        return ANSWER[req.body_type], messages.cert_rep(req_id, row.der)

    async def _renew(self, ex: Exchange, req: messages.Request) -> tuple[str, Any]:
        old = ex.sender_row
        assert old is not None and old.der is not None
        now = self.clock()
        state, renewable = cert_status(old, now, self.window)
        if state == "revoked":
            raise CmpFailure("certRevoked", "the certificate is revoked")
        if not renewable:
            raise CmpFailure("notAuthorized", f"the certificate is not renewable now ({state})")
        req_id, csr = self._requested(req)
        if spki_sha256(csr.spki) == old.public_key_sha256:
            raise CmpFailure("badCertTemplate", "the key update needs a new key pair")
        view = await self._holder_transaction(old, req, now)
        row = await self.issuance.issue(
            view=view,
            usage=old.usage,
            csr=csr,
            terms_version=terms.VERSION,
            renewal_of=old,
            protocol="cmp",
        )
        return await self._issued(ex, req, row, req_id)

    async def _holder_transaction(
        self, cert: cert_q.CertificateRow, req: messages.Request, now: datetime
    ) -> sub_q.SubscriberView:
        """The subscriber holding ``cert`` (kur and rr are signed with its key), and this
        exchange's transaction started for that account (refused when the ID is in use)."""
        async with self.pool.acquire() as conn:
            view = await sub_q.view_by_subscriber_id(conn, cert.subscriber_id)
            if view is None:
                raise CmpFailure("notAuthorized", "the certificate's subscriber is unknown")
            if not await cmp_q.start_transaction(
                conn,
                transaction_id=req.transaction_id,
                account_id=view.account.id,
                secret_id=None,
                now=now,
            ):
                raise CmpFailure("transactionIdInUse", "this transactionID is in use")
        return view

    async def _revoke(self, ex: Exchange, req: messages.Request) -> tuple[str, Any]:
        """Subscribers may revoke their own certificate: the request is signed with the key
        of the certificate it names."""
        own = ex.sender_row
        assert own is not None and ex.sender_cert is not None
        details = req.body
        if len(details) != 1:
            raise CmpFailure("badRequest", "exactly one certificate per revocation request")
        template = details[0]["certDetails"]
        serial = int(template["serialNumber"]) if template["serialNumber"].isValue else None
        issuer_ok = True
        if template["issuer"].isValue:
            try:
                name = rfc5280.Name()
                name["rdnSequence"] = template["issuer"]["rdnSequence"]
                issuer_ok = encoder.encode(name) == ex.sender_cert.issuer.public_bytes()
            except PyAsn1Error:
                issuer_ok = False
        if serial != ex.sender_cert.serial_number or not issuer_ok:
            raise CmpFailure(
                "notAuthorized",
                "a subscriber revokes only the certificate whose key signs the request",
            )
        reason = "unspecified"
        entry = details[0]["crlEntryDetails"]
        if entry.isValue:
            for ext in entry:
                if ext["extnID"] == rfc5280.id_ce_cRLReasons:
                    code = _reason_code(bytes(ext["extnValue"]))
                    if code not in SUBSCRIBER_REASONS:
                        raise CmpFailure(
                            "badRequest",
                            "a subscriber may give the reasons "
                            "unspecified, keyCompromise, affiliationChanged, "
                            "superseded or cessationOfOperation",
                        )
                    reason = SUBSCRIBER_REASONS[code]
        if own.revoked_at is not None:
            raise CmpFailure("certRevoked", "the certificate is revoked already")
        view = await self._holder_transaction(own, req, self.clock())
        await self.revocation.revoke_own(
            serial=own.serial, reason=reason, account=view.account.account, protocol="cmp"
        )
        async with self.pool.acquire() as conn:
            await cmp_q.finish(conn, req.transaction_id, self.clock())
        return "rp", messages.rev_rep("accepted")

    async def _confirm(
        self, ex: Exchange, req: messages.Request, txn: cmp_q.Transaction
    ) -> tuple[str, Any]:
        if txn.state != "waiting" or txn.certificate_id is None:
            raise CmpFailure("badRequest", "this transaction is not waiting for certConf")
        statuses = req.body
        async with self.pool.acquire() as conn:
            row = await cert_q.issued_by_id(conn, txn.certificate_id)
        assert row is not None and row.der is not None
        if len(statuses) != 1 or int(statuses[0]["certReqId"]) != txn.cert_req_id:
            raise CmpFailure(
                "badCertId", "certConf must confirm the certificate of this transaction"
            )
        status = statuses[0]
        if bytes(status["certHash"]) != _cert_hash(row.der, status):
            raise CmpFailure("badCertId", "certHash does not match the issued certificate")
        rejected = (
            status["statusInfo"].isValue and int(status["statusInfo"]["status"]) == 2
        )  # rejection
        async with self.pool.acquire() as conn:
            if not await cmp_q.finish(conn, req.transaction_id, self.clock()):
                raise CmpFailure("badRequest", "this transaction was confirmed already")
            if txn.secret_id is not None:
                await cmp_q.wipe_secret(conn, txn.secret_id)
        if rejected:  # the subscriber refused the certificate: it must not stay valid
            view = None
            async with self.pool.acquire() as conn:
                view = await sub_q.view_by_subscriber_id(conn, row.subscriber_id)
            await self.revocation.revoke_own(
                serial=row.serial,
                reason="cessationOfOperation",
                account=view.account.account if view else "cmp",
                protocol="cmp",
            )
        return "pkiconf", None

    def _general(self, req: messages.Request) -> rfc9480.GenRepContent:
        """genp: the CA certificates (caCerts) and the key types the CA certifies
        (signKeyPairTypes); other info types are left out (RFC 4210 5.3.19)."""
        rep = rfc9480.GenRepContent()
        for itv in req.body:
            kind = itv["infoType"]
            if kind == rfc9480.id_it_caCerts:
                out = rfc9480.InfoTypeAndValue()
                out["infoType"] = kind
                certs = rfc9480.CaCertsValue()
                for der in self._chain():
                    certs.append(messages.cmp_certificate(der))
                out["infoValue"] = encoder.encode(certs)
                rep.append(out)
            elif kind == rfc9480.id_it_signKeyPairTypes:
                out = rfc9480.InfoTypeAndValue()
                out["infoType"] = kind
                types = rfc9480.SignKeyPairTypesValue()
                for oid, curve in (
                    ("1.2.840.113549.1.1.1", None),
                    ("1.2.840.10045.2.1", "1.2.840.10045.3.1.7"),
                    ("1.2.840.10045.2.1", "1.3.132.0.34"),
                ):
                    alg = rfc5280.AlgorithmIdentifier()
                    alg["algorithm"] = univ.ObjectIdentifier(oid)
                    alg["parameters"] = encoder.encode(
                        univ.ObjectIdentifier(curve) if curve else univ.Null("")
                    )
                    types.append(alg)
                out["infoValue"] = encoder.encode(types)
                rep.append(out)
        return rep

    # -- answers --------------------------------------------------------------------------

    def _chain(self) -> list[bytes]:
        """The active issuing CA certificate and its parents, for extraCerts / caCerts."""
        out: list[bytes] = []
        issuer = self.issuers.active
        while issuer is not None and len(out) < 4:
            out.append(issuer.der)
            issuer = self.issuers.get(issuer.parent) if issuer.parent else None
        return out

    def _sender_name(self) -> x509.Name:
        issuer = self.issuers.active
        return issuer.certificate.subject if issuer is not None else x509.Name([])

    async def _answer(self, ex: Exchange, kind: str, value: Any) -> bytes:
        req = ex.request
        now = self.clock()
        implicit = bool(ex.extra.get("implicit_confirm"))
        body = messages.body_of(kind, value)
        extra = self._chain() if kind in ("ip", "cp", "kup") else []
        if ex.secret is not None and ex.pbm is not None:
            pbm = ex.pbm.fresh()
            header = messages.response_header(
                req,
                sender=self._sender_name(),
                protection_alg=pbm.algorithm(),
                sender_kid=req.sender_kid if req else None,
                now=now,
                implicit_confirm=implicit,
            )
            mac = pbm.mac_of(ex.secret, messages.protected_part(header, body))
            return messages.message(header, body, mac, extra)
        if self.response_signer is not None and (ex.signed or kind == "error"):
            try:
                alg, cmp_cert = await self.response_signer.certificate()
                cert = x509.load_der_x509_certificate(cmp_cert)
                header = messages.response_header(
                    req,
                    sender=cert.subject,
                    protection_alg=alg,
                    sender_kid=_key_id(cert),
                    now=now,
                    implicit_confirm=implicit,
                )
                signature = await self.response_signer.sign(messages.protected_part(header, body))
                return messages.message(
                    header,
                    body,
                    signature,
                    [cmp_cert, *self._chain()],
                )
            except Exception as exc:  # an error answer still goes out, unprotected
                log.warning("cmp answer not signed: %s", exc)
                if kind != "error":
                    body = messages.body_of(
                        "error",
                        messages.error_content(
                            "systemUnavail", "the CMP server cannot sign its answer now"
                        ),
                    )
                    extra = []
        header = messages.response_header(
            req,
            sender=self._sender_name(),
            protection_alg=None,
            sender_kid=None,
            now=now,
            implicit_confirm=implicit,
        )
        return messages.message(header, body, None, extra)

    async def purge(self) -> None:
        now = self.clock()
        async with self.pool.acquire() as conn:
            await cmp_q.purge(
                conn,
                nonces_before=now - self.replay_window,
                transactions_before=now - TRANSACTION_KEEP,
                now=now,
            )


def serialization_b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _reason_code(extn_value: bytes) -> int:
    try:
        value, _ = decoder.decode(extn_value, asn1Spec=rfc5280.CRLReason())
        return int(value)
    except (PyAsn1Error, ValueError) as exc:
        raise CmpFailure("badRequest", "reasonCode does not parse") from exc


def _cert_hash(der: bytes, status: Any) -> bytes:
    """certHash: with the certificate's signature hash (RFC 4210), or hashAlg (RFC 9480)."""
    cert = x509.load_der_x509_certificate(der)
    algorithm: hashes.HashAlgorithm = cert.signature_hash_algorithm or hashes.SHA256()
    if status["hashAlg"].isValue:
        oid = str(status["hashAlg"]["algorithm"])
        known = protection.OWF.get(oid)
        if known is None:
            raise CmpFailure("badAlg", "unsupported hashAlg in certConf")
        algorithm = known()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return digest.finalize()


def _key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def check_profile(profile: str | None) -> str | None:
    if profile is not None and profile not in USAGES:
        raise CmpFailure("badRequest", "unknown profile: use signing or encryption")
    return profile
