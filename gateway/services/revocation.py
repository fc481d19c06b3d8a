"""RA revocation: record the revocation with its RFC 5280 reason and an audit event in one
transaction; OCSP sees it at once, and the issuer's CRL is re-signed right after."""

from __future__ import annotations

import logging
import re

import asyncpg

from db import audit
from db.queries import certificates as cert_q
from db.queries import crls as crl_q
from db.queries import revocations as revocation_q
from gateway.clock import Clock
from gateway.errors import ApiError, Kind
from gateway.metrics import GatewayMetrics
from gateway.services.crl import CrlService
from signer.vocabulary import REQUESTED_REASONS, SERIAL_PATTERN

log = logging.getLogger("gateway.revocation")
REASONS = REQUESTED_REASONS
SERIAL = re.compile(SERIAL_PATTERN)


class RevocationService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        crl: CrlService,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.clock = clock
        self.crl = crl

    async def revoke(
        self, *, serial: str, reason: object, officer_id: int, officer_login: str
    ) -> cert_q.CertificateRow:
        if not SERIAL.match(serial):
            raise ApiError(Kind.NOT_FOUND, "no such certificate")
        if not isinstance(reason, str) or reason not in REASONS:
            raise ApiError(
                Kind.INVALID_FIELD, "reason must be one of " + ", ".join(REASONS), field="reason"
            )
        return await self._revoke(
            serial=serial, reason=reason, actor=officer_login, revoked_by=officer_id, details={}
        )

    async def revoke_own(
        self, *, serial: str, reason: str, account: str, protocol: str
    ) -> cert_q.CertificateRow:
        """A subscriber revokes a certificate of their own (CMP ``rr`` signed with its key):
        the same record, audit event (actor: the account, ``protocol`` in the details), CRL
        and OCSP as an RA revocation, with no officer."""
        if reason not in REASONS:
            raise ApiError(Kind.INVALID_FIELD, "unknown reason", field="reason")
        return await self._revoke(
            serial=serial,
            reason=reason,
            actor=account,
            revoked_by=None,
            details={"protocol": protocol},
        )

    async def _revoke(
        self,
        *,
        serial: str,
        reason: str,
        actor: str,
        revoked_by: int | None,
        details: dict[str, str],
    ) -> cert_q.CertificateRow:
        """The revocation record, the CRL marked dirty and the audit event in one transaction;
        then the CRL re-signed at once (the periodic task retries if the signer is down)."""
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await cert_q.issued_by_serial(conn, serial, for_update=True)
            if row is None:
                raise ApiError(Kind.NOT_FOUND, "no such certificate")
            if not await revocation_q.insert(
                conn, certificate_id=row.id, reason=reason, revoked_at=now, revoked_by=revoked_by
            ):
                raise ApiError(Kind.ALREADY_REVOKED, "this certificate is revoked already")
            await crl_q.mark_dirty(conn, row.issuer_id)
            await audit.append(
                conn,
                actor=actor,
                action="certificate_revoked",
                target=serial,
                details={"reason": reason, "id": row.id, "issuer": row.issuer_name, **details},
                at=now,
            )
        if self.metrics is not None:
            self.metrics.certificates_revoked.labels(reason=reason).inc()
        try:
            await self.crl.regenerate(row.issuer_id)
        except Exception as exc:
            log.warning("CRL not re-signed after revocation (will retry): %s", exc)
        async with self.pool.acquire() as conn:
            done = await cert_q.issued_by_id(conn, row.id)
        assert done is not None
        return done
