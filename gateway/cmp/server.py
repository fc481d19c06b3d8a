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
   is badMessageCheck / notAuthorized (``gateway.cmp.authentication``). Only now is the
   nonce recorded;
5. the body: enrol and confirm (``gateway.cmp.enrol``), renew and revoke
   (``gateway.cmp.holder``), general message (``gateway.cmp.general``); the certificate
   request and response they share are in ``gateway.cmp.certreq``;
6. the answer, protected like the request: the same secret's MAC, or the CMP server
   certificate's signature (``gateway.cmp.answer``, ``gateway.cmp.signing``). Errors found
   after step 4 are protected too; before it they go out unprotected
   (``openssl cmp -unprotected_errors``) or signed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import asyncpg

from db.queries import cmp as cmp_q
from gateway.clock import Clock
from gateway.cmp import messages
from gateway.cmp.answer import Answerer, ResponseSigner
from gateway.cmp.authentication import Authenticator
from gateway.cmp.enrol import Enroller
from gateway.cmp.exchange import Exchange, Reply
from gateway.cmp.failures import CmpFailure
from gateway.cmp.general import general
from gateway.cmp.holder import HolderRequests
from gateway.cmp.metrics import CmpMetrics
from gateway.errors import ApiError, Kind
from gateway.services.issuance import IssuanceService
from gateway.services.issuers import IssuerRegistry
from gateway.services.revocation import RevocationService
from signer.errors import SignerError
from signer.vocabulary import USAGES

log = logging.getLogger("gateway.cmp")
NEW_TRANSACTION = ("ir", "cr", "p10cr", "kur", "rr", "genm")
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


class CmpServer:
    """The steps of one exchange, in order; each step's work is in its own module."""

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
        self.skew = timedelta(seconds=max_skew_seconds)
        self.replay_window = timedelta(seconds=replay_window_seconds)
        self.metrics = metrics
        self.authenticator = Authenticator(pool=pool, clock=clock)
        self.enroller = Enroller(
            pool=pool, clock=clock, issuance=issuance, revocation=revocation, metrics=metrics
        )
        self.holder = HolderRequests(
            pool=pool,
            clock=clock,
            issuance=issuance,
            revocation=revocation,
            renewal_window=timedelta(days=renewal_window_days),
            metrics=metrics,
        )
        self.answerer = Answerer(clock=clock, issuers=issuers, response_signer=response_signer)

    async def handle(self, der: bytes, profile: str | None) -> bytes:
        """One CMP request → one DER answer; every failure becomes a CMP error message."""
        ex = Exchange()
        body_type = "unknown"
        try:
            # 1. decode
            ex.request = req = messages.decode(der)
            body_type = req.body_type
            # 2.-5.
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
        # 6. the answer
        try:
            return await self.answerer.answer(ex, kind, value)
        except Exception:
            log.exception("cmp answer failed")
            return await self.answerer.answer(
                Exchange(request=ex.request),
                "error",
                messages.error_content("systemFailure", "the CMP server failed"),
            )

    async def _serve(self, ex: Exchange, req: messages.Request, profile: str | None) -> Reply:
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
        await self.authenticator.check(ex, req, txn)
        async with self.pool.acquire() as conn:
            if not await cmp_q.record_nonce(conn, req.transaction_id, req.sender_nonce, now):
                raise CmpFailure("transactionIdInUse", "this message was received already")
        # 5. the body
        try:
            return await self._body(ex, req, txn, profile)
        except ApiError as exc:
            raise CmpFailure(ERROR_KINDS.get(exc.kind, "badRequest"), exc.message) from None
        except SignerError as exc:
            raise CmpFailure(
                "systemUnavail", f"the signing service failed: {exc.kind.value}"
            ) from None

    async def _body(
        self,
        ex: Exchange,
        req: messages.Request,
        txn: cmp_q.Transaction | None,
        profile: str | None,
    ) -> Reply:
        if req.body_type in ("ir", "cr", "p10cr"):
            return await self.enroller.enrol(ex, req, profile)
        if req.body_type == "kur":
            return await self.holder.renew(ex, req)
        if req.body_type == "rr":
            return await self.holder.revoke(ex, req)
        if req.body_type == "certConf":
            assert txn is not None
            return await self.enroller.confirm(ex, req, txn)
        return "genp", general(req, self.answerer.chain())

    async def purge(self) -> None:
        """Forget nonces older than the replay window and transactions older than a day."""
        now = self.clock()
        async with self.pool.acquire() as conn:
            await cmp_q.purge(
                conn,
                nonces_before=now - self.replay_window,
                transactions_before=now - TRANSACTION_KEEP,
                now=now,
            )


def check_profile(profile: str | None) -> str | None:
    """The URL's profile names a usage (signing, encryption) or is absent."""
    if profile is not None and profile not in USAGES:
        raise CmpFailure("badRequest", "unknown profile: use signing or encryption")
    return profile
