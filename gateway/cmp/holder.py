"""The bodies a certificate holder signs with its certificate's key: ``kur`` and ``rr``.

The signature was checked in step 4, so ``ex.sender_row`` is a certificate this CA issued;
both bodies act on that certificate only. A key update renews it inside the renewal window
with a new key pair through the same issuance pipeline as the portal; a revocation request
revokes it with a reason a subscriber may give (privilegeWithdrawn is the RA's to state).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1_alt_modules import rfc5280

from db.queries import certificates as cert_q
from db.queries import cmp as cmp_q
from db.queries import subscribers as sub_q
from gateway import terms
from gateway.clock import Clock
from gateway.cmp import certreq, messages
from gateway.cmp.exchange import Exchange, Reply
from gateway.cmp.failures import CmpFailure
from gateway.cmp.metrics import CmpMetrics
from gateway.services.cert_status import status as cert_status
from gateway.services.issuance import IssuanceService, spki_sha256
from gateway.services.revocation import RevocationService
from signer.vocabulary import REASON_CODES, REQUESTED_REASONS

# CRLReason values a subscriber may give in rr: those of a revocation request, but for
# privilegeWithdrawn, which is the RA's to state
SUBSCRIBER_REASONS = {REASON_CODES[r]: r for r in REQUESTED_REASONS if r != "privilegeWithdrawn"}


class HolderRequests:
    """Serves kur (renew the signing certificate) and rr (revoke it)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        issuance: IssuanceService,
        revocation: RevocationService,
        renewal_window: timedelta,
        metrics: CmpMetrics | None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.issuance = issuance
        self.revocation = revocation
        self.window = renewal_window
        self.metrics = metrics

    async def renew(self, ex: Exchange, req: messages.Request) -> Reply:
        """kur: a new certificate for a new key, while the old one is renewable."""
        old = ex.sender_row
        assert old is not None and old.der is not None
        now = self.clock()
        state, renewable = cert_status(old, now, self.window)
        if state == "revoked":
            raise CmpFailure("certRevoked", "the certificate is revoked")
        if not renewable:
            raise CmpFailure("notAuthorized", f"the certificate is not renewable now ({state})")
        req_id, csr = certreq.requested(req)
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
        return await certreq.issued(
            ex, req, row, req_id, pool=self.pool, clock=self.clock, metrics=self.metrics
        )

    async def revoke(self, ex: Exchange, req: messages.Request) -> Reply:
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
                    code = reason_code(bytes(ext["extnValue"]))
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


def reason_code(extn_value: bytes) -> int:
    """The CRLReason of an rr's crlEntryDetails extension; badRequest when it does not parse."""
    try:
        value, _ = decoder.decode(extn_value, asn1Spec=rfc5280.CRLReason())
        return int(value)
    except (PyAsn1Error, ValueError) as exc:
        raise CmpFailure("badRequest", "reasonCode does not parse") from exc
