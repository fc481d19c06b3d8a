"""OCSP responder (RFC 6960): one request in, one signed response out.

``OcspResponder.respond`` is the single entry point (a cache of pre-signed answers can slot in
there). A request that does not parse, carries several CertIDs or a nonce outside 1-32 octets
(RFC 8954) gets a ``malformedRequest`` response; a CertID naming no issuer of ours gets
``unauthorized``; a signer failure ``tryLater``. Those are unsigned, as RFC 6960 prescribes,
and served with HTTP 200 like every other OCSP answer. Serials this CA never issued (including
applications that failed) are ``unknown``; revocations are read from the database on each
request, so they show at once.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, timedelta
from typing import Any

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from db.queries import certificates as cert_q
from gateway.keys import Clock
from gateway.services.issuance import SignerOps
from gateway.services.issuers import IssuerRegistry
from signer.protocol import OcspRequest

log = logging.getLogger("gateway.ocsp")
VALIDITY = timedelta(hours=1)
SIGN_DEADLINE_SECONDS = 5.0
MAX_REQUEST = 16 * 1024


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


class OcspResponder:
    presigned: Any = None  # ocsp_presign.StoredResponses, installed at start-up

    def __init__(self, *, pool: asyncpg.Pool, signer: Any, issuers: IssuerRegistry,
                 clock: Clock) -> None:
        self.pool = pool
        self.signer: SignerOps = signer
        self.issuers = issuers
        self.clock = clock

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
        # 2. which of our CAs
        issuer = self.issuers.match_cert_id(algorithm, name_hash, key_hash)
        issuer_id = self.issuers.ids.get(issuer.name) if issuer else None
        if issuer is None or issuer_id is None:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        if serial <= 0 or serial.bit_length() > 159:  # not a serial any CA can issue
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        # 2b. a pre-signed response (gateway/services/ocsp_presign.py) when one is stored, still
        # fresh and states the current status; a request with a nonce is signed afresh
        if self.presigned is not None:
            stored = await self.presigned.serve(issuer_id, serial, nonce)
            if stored is not None:
                return stored
        # 3. the certificate's status, now
        async with self.pool.acquire() as conn:
            found = await cert_q.serial_status(conn, issuer_id=issuer_id,
                                               serial=format(serial, "x"))
        now = self.clock().astimezone(UTC).replace(microsecond=0)
        item = OcspRequest(
            issuer=issuer.name, serial=serial,
            status=found.status if found else "unknown",
            this_update=int(now.timestamp()), next_update=int((now + VALIDITY).timestamp()),
            revoked_at=int(found.revoked_at.timestamp()) if found and found.revoked_at else None,
            reason=found.reason if found else None, nonce=nonce,
        )
        # 4. signed by the signer
        try:
            (result,) = await self.signer.sign_ocsp([item], time.time() + SIGN_DEADLINE_SECONDS)
            return result.unwrap()
        except Exception as exc:
            log.warning("OCSP response not signed: %s", exc)
            return unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
