"""The certificate request of ``ir``/``cr``/``kur``/``p10cr`` in, the certificate response out.

``requested`` turns the one CertReqMsg (its template's public key and its signature
proof-of-possession) or the p10cr's PKCS#10 CSR into the ``CheckedCsr`` the issuance pipeline
takes, so CMP certificates pass the same key policy as the portal's. ``issued`` records the
new certificate in the exchange's transaction and builds the ip/cp/kup answer; with implicit
confirmation the transaction ends there and the enrolment secret is wiped.
"""

from __future__ import annotations

import base64

import asyncpg
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import encoder
from pyasn1_alt_modules import rfc9480

from db.queries import certificates as cert_q
from db.queries import cmp as cmp_q
from gateway.clock import Clock
from gateway.cmp import messages, protection
from gateway.cmp.exchange import Exchange, Reply
from gateway.cmp.failures import CmpFailure
from gateway.cmp.metrics import CmpMetrics
from gateway.csr import CheckedCsr, CsrError, check_key, parse_csr
from gateway.errors import ApiError, Kind

ANSWER = {"ir": "ip", "cr": "cp", "p10cr": "cp", "kur": "kup"}


def requested(req: messages.Request) -> tuple[int, CheckedCsr]:
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
            "the template needs the public key (keys are made by the subscriber, never by the CA)",
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


async def issued(
    ex: Exchange,
    req: messages.Request,
    row: cert_q.CertificateRow,
    req_id: int,
    *,
    pool: asyncpg.Pool,
    clock: Clock,
    metrics: CmpMetrics | None,
) -> Reply:
    """Record ``row`` as this transaction's certificate (done at once with implicit
    confirmation, which also wipes the secret) and answer with it."""
    assert row.der is not None
    implicit = req.implicit_confirm
    async with pool.acquire() as conn:
        await cmp_q.set_certificate(
            conn,
            req.transaction_id,
            certificate_id=row.id,
            cert_req_id=req_id,
            done=implicit,
            now=clock(),
        )
        if implicit and ex.secret_id is not None:
            await cmp_q.wipe_secret(conn, ex.secret_id)
    ex.extra["implicit_confirm"] = implicit
    if metrics is not None:
        metrics.certificates.labels(operation=req.body_type).inc()
    return ANSWER[req.body_type], messages.cert_rep(req_id, row.der)


def serialization_b64(der: bytes) -> str:
    """The CSR parser takes the base64 text the portal receives; a p10cr carries DER."""
    return base64.b64encode(der).decode("ascii")
