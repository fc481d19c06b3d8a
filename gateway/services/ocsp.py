"""OCSP responder (RFC 6960): one request in, one signed response out.

``OcspResponder.respond`` is the single entry point. A request that does not parse, carries
several CertIDs or a nonce outside 1-32 octets (RFC 8954) gets a ``malformedRequest`` response;
a CertID naming no issuer we answer for online (another CA's, or the offline root's) gets
``unauthorized``; a signer failure ``tryLater``. Those are unsigned, as RFC 6960 prescribes,
and served with HTTP 200 like every other OCSP answer. Serials this CA never issued (including
applications that failed) are ``unknown``; revocations are read from the database on each
request, so they show at once.

Anonymous requests must not drive the token (``gateway/services/ocsp_budget.py``):

1. the database is asked once per request: the certificate's state and its stored pre-signed
   answer (``gateway/services/ocsp_presign.py``); without a nonce a stored answer that is still
   valid and states the current status is served as it is. At most a quarter of the pool's
   connections serve OCSP lookups at once (the rest wait in the gateway), so a flood cannot
   take the connections logged-in users need;
2. a serial never issued is answered from the cache of signed ``unknown`` answers (signed once
   per serial, without the nonce);
3. anything else needs a fresh signature: one token from the gateway's budget, then the signer's
   bulk lane (below issuance). Without a token the stored answer is served without the nonce
   (RFC 8954 4.1 lets a responder ignore it), else ``tryLater``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from db.queries import ocsp as ocsp_q
from gateway.clock import Clock
from gateway.services.issuers import IssuerRegistry
from gateway.services.ocsp_budget import TokenBucket, UnknownCache
from signer.client import SignerOps
from signer.protocol import OcspRequest

log = logging.getLogger("gateway.ocsp")
VALIDITY = timedelta(hours=1)
SIGN_DEADLINE_SECONDS = 5.0
MAX_REQUEST = 16 * 1024
STORED_MARGIN_SECONDS = 60.0  # a stored answer this close to its nextUpdate is not served
DEFAULT_FRESH_PER_SECOND = 50
DEFAULT_DB_CONCURRENCY = 2  # lookups in flight at once: a flood never holds the whole pool


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


class OcspResponder:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        signer: SignerOps,
        issuers: IssuerRegistry,
        clock: Clock,
        metrics: Any = None,
        budget: TokenBucket | None = None,
        unknown: UnknownCache | None = None,
        db_concurrency: int = DEFAULT_DB_CONCURRENCY,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.issuers = issuers
        self.clock = clock
        self.metrics = metrics
        self.budget = budget or TokenBucket(DEFAULT_FRESH_PER_SECOND, DEFAULT_FRESH_PER_SECOND)
        self.unknown = unknown or UnknownCache()
        # OCSP is anonymous: its lookups queue here, not for the pool's connections, so the
        # sessions and applications of logged-in users always find one free
        self._db_slots = asyncio.Semaphore(max(1, db_concurrency))

    def _count(self, source: str | None = None, budget: str | None = None) -> None:
        if self.metrics is None:
            return
        if source is not None:
            self.metrics.ocsp_responses.labels(source=source).inc()
        if budget is not None:
            self.metrics.ocsp_budget.labels(outcome=budget).inc()

    async def respond(self, request_der: bytes) -> bytes:
        # 1. parse
        if not request_der or len(request_der) > MAX_REQUEST:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        try:
            req = ocsp.load_der_ocsp_request(request_der)
            algorithm = req.hash_algorithm
            serial = req.serial_number
            name_hash, key_hash = req.issuer_name_hash, req.issuer_key_hash
            nonce = None
            try:
                nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                pass
        except Exception:
            # (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension for two nonces, ...);
            # whatever the bytes, a request that does not parse is malformedRequest
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if nonce is not None and not 1 <= len(nonce) <= 32:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        # 2. which of our CAs: an online one (never the offline root), else unauthorized,
        # unsigned
        issuer = self.issuers.match_cert_id(algorithm, name_hash, key_hash)
        issuer_id = self.issuers.ids.get(issuer.name) if issuer else None
        if issuer is None or issuer_id is None:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        if serial <= 0 or serial.bit_length() > 159:  # not a serial any CA can issue
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        # 3. the certificate's state now, and its stored answer (one query)
        async with self._db_slots:
            row = await ocsp_q.lookup(self.pool, format(serial, "x"))
        now = self.clock().astimezone(UTC)
        if row is None or row.issuer_id != issuer_id or row.cert_status != "issued":
            return await self._unknown(issuer.name, issuer_id, serial, now)
        stored = row.fresh(now, STORED_MARGIN_SECONDS)
        if stored is not None and nonce is None:
            self._count("stored")
            return stored
        # 4. a fresh signature (a nonce to echo, or nothing valid stored), if the budget allows
        if not self.budget.take():
            if stored is not None:
                self._count("stored", budget="stored")
                return stored  # without the nonce: RFC 8954 4.1
            self._count(budget="try_later")
            return unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
        self._count(budget="fresh")
        revoked = row.revoked_at is not None
        der = await self._sign(
            OcspRequest(
                issuer=issuer.name,
                serial=serial,
                status="revoked" if revoked else "good",
                **self._window(now),
                revoked_at=int(row.revoked_at.timestamp()) if row.revoked_at else None,
                reason=row.reason if revoked else None,
                nonce=nonce,
            )
        )
        return der if der is not None else unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)

    async def _unknown(self, issuer: str, issuer_id: int, serial: int, now: datetime) -> bytes:
        """A serial this issuer never issued: the cached answer, else one signed now (budget
        permitting) without the nonce, so that it can be cached and served again."""
        cached = self.unknown.get(issuer_id, serial, now)
        if cached is not None:
            self._count("cached")
            return cached
        if not self.budget.take():
            self._count(budget="try_later")
            return unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
        self._count(budget="fresh")
        window = self._window(now)
        der = await self._sign(
            OcspRequest(issuer=issuer, serial=serial, status="unknown", **window)
        )
        if der is None:
            return unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
        self.unknown.put(
            issuer_id,
            serial,
            der,
            datetime.fromtimestamp(window["this_update"], UTC),
            datetime.fromtimestamp(window["next_update"], UTC),
        )
        return der

    @staticmethod
    def _window(now: datetime) -> dict[str, int]:
        start = now.replace(microsecond=0)
        return {
            "this_update": int(start.timestamp()),
            "next_update": int((start + VALIDITY).timestamp()),
        }

    async def _sign(self, item: OcspRequest) -> bytes | None:
        """Signed in the signer's bulk lane: an applicant waiting for a certificate goes first.
        None when the signer cannot answer (the caller answers ``tryLater``)."""
        try:
            (result,) = await self.signer.sign_ocsp(
                [item], time.time() + SIGN_DEADLINE_SECONDS, bulk=True
            )
            der = result.unwrap()
        except Exception as exc:
            log.warning("OCSP response not signed: %s", exc)
            return None
        self._count("signed")
        return der
