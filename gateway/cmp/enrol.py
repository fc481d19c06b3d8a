"""The enrolment bodies: ``ir``/``cr``/``p10cr`` with the one-time secret, and ``certConf``.

An enrolment uses up the account's open secret and starts the transaction in one database
transaction, so one secret gives one certificate; if issuance then fails the secret is
released again, since nothing was issued. ``certConf`` ends a transaction left waiting by an
ip/cp/kup without implicit confirmation: the certHash must match what was issued, and a
certificate the subscriber rejects is revoked at once rather than left valid.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from db.queries import certificates as cert_q
from db.queries import cmp as cmp_q
from db.queries import subscribers as sub_q
from gateway import terms
from gateway.clock import Clock
from gateway.cmp import certreq, messages, protection
from gateway.cmp.exchange import Exchange, Reply
from gateway.cmp.failures import CmpFailure
from gateway.cmp.metrics import CmpMetrics
from gateway.services.issuance import IssuanceService
from gateway.services.revocation import RevocationService


class Enroller:
    """Serves ir/cr/p10cr (MAC-protected with the enrolment secret) and certConf."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        issuance: IssuanceService,
        revocation: RevocationService,
        metrics: CmpMetrics | None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.issuance = issuance
        self.revocation = revocation
        self.metrics = metrics

    async def enrol(self, ex: Exchange, req: messages.Request, profile: str | None) -> Reply:
        """A first certificate of ``profile`` (default signing) for the secret's account."""
        usage = profile or "signing"
        assert ex.account_id is not None and ex.secret_id is not None
        req_id, csr = certreq.requested(req)
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
        return await certreq.issued(
            ex, req, row, req_id, pool=self.pool, clock=self.clock, metrics=self.metrics
        )

    async def confirm(self, ex: Exchange, req: messages.Request, txn: cmp_q.Transaction) -> Reply:
        """certConf: accept or reject the transaction's certificate; pkiconf either way."""
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
        if bytes(status["certHash"]) != cert_hash(row.der, status):
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


def cert_hash(der: bytes, status: Any) -> bytes:
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
