"""Renewal with proof of the old key: a single-use challenge, then a CSR for a new key plus the
old private key's signature over ``challenge ‖ csr_der``.

Checks in the order of API.md: not_renewable, bad_challenge, pop_failed (old key), key_reuse,
then the CSR checks of applying. The challenge is used up by any attempt, whatever its outcome.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from datetime import datetime, timedelta

import asyncpg
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from db.queries import certificates as cert_q
from db.queries import renewals as renewal_q
from db.queries import subscribers as sub_q
from gateway.clock import Clock
from gateway.csr import CsrError, parse_csr, request_der, request_public_key
from gateway.errors import ApiError, Kind
from gateway.services.cert_status import status
from gateway.services.issuance import IssuanceService, check_terms, csr_error, spki_sha256

CHALLENGE_BYTES = 32
CHALLENGE_TTL = timedelta(minutes=5)


def _b64(text: object) -> bytes | None:
    if not isinstance(text, str) or not text or len(text) > 4096:
        return None
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def old_key_signed(old_der: bytes, message: bytes, signature: bytes | None) -> bool:
    """RSA PKCS#1 v1.5 with SHA-256, or ECDSA with SHA-256 (DER), by the old certificate's key."""
    if not signature:
        return False
    key = x509.load_der_x509_certificate(old_der).public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


class RenewalService:
    def __init__(
        self, *, pool: asyncpg.Pool, clock: Clock, window_days: int, issuance: IssuanceService
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.window = timedelta(days=window_days)
        self.issuance = issuance

    async def _own(
        self, conn: asyncpg.Connection, subscriber_id: int, cert_id: int
    ) -> cert_q.CertificateRow:
        row = await cert_q.issued_by_id(conn, cert_id, subscriber_id=subscriber_id)
        if row is None:
            raise ApiError(Kind.NOT_FOUND, "no such certificate")
        return row

    def _renewable(self, row: cert_q.CertificateRow, now: datetime) -> bool:
        return status(row, now, self.window)[1]

    async def challenge(self, *, subscriber_id: int, cert_id: int) -> tuple[str, datetime]:
        now = self.clock()
        async with self.pool.acquire() as conn:
            row = await self._own(conn, subscriber_id, cert_id)
            if not self._renewable(row, now):
                raise ApiError(Kind.NOT_RENEWABLE, "this certificate is not renewable now")
            raw = secrets.token_bytes(CHALLENGE_BYTES)
            expires = now + CHALLENGE_TTL
            await renewal_q.insert_challenge(
                conn,
                challenge_hash=hashlib.sha256(raw).digest(),
                certificate_id=row.id,
                now=now,
                expires_at=expires,
            )
        return base64.b64encode(raw).decode("ascii"), expires

    async def renew(
        self,
        *,
        account_id: int,
        subscriber_id: int,
        cert_id: int,
        csr_text: object,
        challenge: object,
        signature: object,
        terms_version: object,
    ) -> cert_q.CertificateRow:
        now = self.clock()
        raw_challenge = _b64(challenge)
        async with self.pool.acquire() as conn:
            old = await self._own(conn, subscriber_id, cert_id)
            used = None
            if raw_challenge is not None:  # any attempt uses the challenge up
                used = await renewal_q.consume_challenge(
                    conn, hashlib.sha256(raw_challenge).digest(), now
                )
            view = await sub_q.view_by_account_id(conn, account_id)
        if view is None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in first")
        # 1. the old certificate is inside its window, not revoked, superseded or expired
        if not self._renewable(old, now):
            raise ApiError(Kind.NOT_RENEWABLE, "this certificate is not renewable now")
        # 2. a challenge of ours, for this certificate, unused and not expired
        if used is None or used.certificate_id != old.id or used.expires_at <= now:
            raise ApiError(
                Kind.BAD_CHALLENGE,
                "the challenge is unknown, used, expired or for another certificate",
            )
        assert raw_challenge is not None and old.der is not None
        # 3. the old private key signed challenge ‖ csr_der
        try:
            der, request = request_der(csr_text)
        except CsrError as exc:
            raise csr_error(exc) from None
        if not old_key_signed(old.der, raw_challenge + der, _b64(signature)):
            raise ApiError(
                Kind.POP_FAILED, "the signature by the current certificate's key does not verify"
            )
        # 4. a new key
        try:
            new_key = request_public_key(request)
        except CsrError as exc:
            raise csr_error(exc) from None
        new_spki = new_key.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki_sha256(new_spki) == old.public_key_sha256:
            raise ApiError(Kind.KEY_REUSE, "the renewal needs a new key pair")
        # 5. the checks of applying
        try:
            csr = parse_csr(csr_text)
        except CsrError as exc:
            raise csr_error(exc) from None
        version = check_terms(terms_version)
        return await self.issuance.issue(
            view=view, usage=old.usage, csr=csr, terms_version=version, renewal_of=old
        )

    async def purge_expired(self) -> None:
        async with self.pool.acquire() as conn:
            await renewal_q.delete_expired_challenges(conn, self.clock() - timedelta(hours=1))
