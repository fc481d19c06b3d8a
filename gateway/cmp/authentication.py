"""Step 4 of a CMP exchange: is the request protected, and by whom it may be.

Two ways in, each for its own bodies: a password-based MAC with the reference's one-time
enrolment secret (``ir``, ``cr``, ``p10cr``, their ``certConf``, ``genm``), or a signature by
a certificate this CA issued (``kur``, ``rr``, their ``certConf``, ``genm``). A transaction
keeps the way it started: a MAC-started one is confirmed by MAC, a signed one by a signature
of the same subscriber. What is found is written into the ``Exchange`` so the bodies and the
answer use the same secret or certificate. The MAC and signature arithmetic itself is in
``gateway.cmp.protection``.
"""

from __future__ import annotations

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.error import PyAsn1Error

from db.queries import certificates as cert_q
from db.queries import cmp as cmp_q
from db.queries import subscribers as sub_q
from gateway.clock import Clock
from gateway.cmp import messages, protection
from gateway.cmp.exchange import Exchange
from gateway.cmp.failures import CmpFailure

MAC_BODIES = ("ir", "cr", "p10cr", "certConf", "genm")
SIGNED_BODIES = ("kur", "rr", "certConf", "genm")


class Authenticator:
    """Checks a request's protection against the enrolment secrets and issued certificates."""

    def __init__(self, *, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def check(
        self, ex: Exchange, req: messages.Request, txn: cmp_q.Transaction | None
    ) -> None:
        """Refuse (badMessageCheck / notAuthorized) unless the request is protected the way
        its body and transaction allow; on success ``ex`` says how to protect the answer."""
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
        cert = sender_certificate(req)
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


def sender_certificate(req: messages.Request) -> x509.Certificate:
    """The certificate a signed request is protected with: RFC 9483 puts it first in
    extraCerts."""
    extra = req.message["extraCerts"]
    if not extra.isValue or len(extra) == 0:
        raise CmpFailure(
            "notAuthorized", "the protecting certificate must be the first of extraCerts"
        )
    try:
        return x509.load_der_x509_certificate(messages.certificate_der(extra[0]))
    except (ValueError, PyAsn1Error, KeyError) as exc:
        raise CmpFailure("badDataFormat", "extraCerts[0] is not an X.509 certificate") from exc
