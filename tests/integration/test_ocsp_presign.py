"""OCSP pre-signing: the job signs (via the real signer on SoftHSM) and stores a response for
every unexpired certificate; the responder serves the stored bytes; a revocation is answered at
once (signed afresh) and the next incremental run replaces the stale stored response."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from config.loader import load
from config.manifest import load_manifest, manifest_path
from gateway.services import ocsp_presign
from gateway.services.ocsp_presign import OcspPresigner
from tests.integration import lifecycle
from tests.integration.conftest import active_subscriber
from tests.integration.lifecycle import apply, csr_pem, new_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

# the real CA (RSA-2048), signer daemon and gateway configuration of lifecycle.py
ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process


@pytest.fixture(scope="module", autouse=True)
def no_periodic_job() -> Iterator[None]:
    """The tests run the job themselves; the gateway's own periodic run stays out of the way."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ocsp_presign, "PRESIGN_START_DELAY_SECONDS", 3600.0)
        yield


def issuing_cert(ca_config: Path) -> x509.Certificate:
    entry = next(e for e in load_manifest(manifest_path(load(ca_config, environ={}))) if e.active)
    return entry.load_certificate()


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bool = False) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce:
        b = b.add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


async def ask(client: Any, der: bytes) -> bytes:
    r = await client.call(
        "POST", "/ocsp", raw=der, headers={"Content-Type": "application/ocsp-request"}, csrf=False
    )
    assert r.status == 200
    return r.body


def check_signed(der: bytes, issuer: x509.Certificate, serial: int) -> ocsp.OCSPResponse:
    """Signed by the issuer's delegated responder: its certificate comes with the response, is
    issued by the issuer for OCSP signing and is what the responder ID names."""
    resp = ocsp.load_der_ocsp_response(der)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.serial_number == serial
    (responder,) = resp.certificates
    responder.verify_directly_issued_by(issuer)
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.OCSP_SIGNING in eku
    assert (
        resp.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    )
    responder.public_key().verify(  # type: ignore[call-arg]
        resp.signature,
        resp.tbs_response_bytes,
        padding.PKCS1v15(),
        resp.signature_hash_algorithm,
    )
    return resp


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


async def test_job_presigns_every_unexpired_certificate(
    new_client: Any,
    officer: Any,
    db_pool: Any,
    signer: Any,
    clock: Any,
    ca_config: Path,
    state: dict[str, Any],
) -> None:
    certs = []
    for _ in range(2):
        c, _, _ = await active_subscriber(new_client, officer)
        for usage in ("signing", "encryption"):
            r = await apply(c, usage, csr_pem(new_key("p256")))
            assert r.status == 201, r.text
            certs.append(x509.load_pem_x509_certificate(r.json["certificate"].encode()))
    job = OcspPresigner(pool=db_pool, signer=signer, clock=clock, batch=3, inflight=2, chunk=5)
    stats = await job.run("issuing-1")
    assert stats.errors == 0 and stats.signed == stats.stored == len(certs)
    issuer = issuing_cert(ca_config)
    rows = await db_pool.fetch(
        """SELECT c.serial, o.der, o.status FROM ocsp_responses o
           JOIN certificates c ON c.id = o.certificate_id"""
    )
    assert len(rows) == len(certs)
    for row in rows:
        resp = check_signed(bytes(row["der"]), issuer, int(row["serial"], 16))
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD and row["status"] == "good"
        assert resp.next_update_utc - resp.this_update_utc == timedelta(days=1)
    # an incremental run has nothing to do
    again = await job.run("issuing-1", refresh_margin=timedelta(hours=12))
    assert again.signed == 0
    state["certs"], state["job"] = certs, job


async def test_responder_serves_the_stored_response(
    new_client: Any,
    db_pool: Any,
    ca_config: Path,
    state: dict[str, Any],
) -> None:
    cert = state["certs"][0]
    issuer = issuing_cert(ca_config)
    stored = await db_pool.fetchval(
        """SELECT o.der FROM ocsp_responses o JOIN certificates c ON c.id = o.certificate_id
           WHERE c.serial = $1""",
        format(cert.serial_number, "x"),
    )
    client = new_client()
    assert await ask(client, ocsp_request(cert, issuer)) == bytes(stored)
    # a request with a nonce is signed afresh and echoes the nonce
    fresh = check_signed(
        await ask(client, ocsp_request(cert, issuer, nonce=True)), issuer, cert.serial_number
    )
    assert fresh.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    metrics = (await client.call("GET", "/metrics")).text
    assert 'ca_gateway_ocsp_responses_total{source="stored"} 1.0' in metrics
    assert 'ca_gateway_ocsp_responses_total{source="signed"} 1.0' in metrics
    # issuance metrics (recorded around the lifecycle services) and pool gauges
    assert 'ca_gateway_certificates_issued_total{key="p256",profile="signing"} 2.0' in metrics
    assert 'ca_gateway_issuance_duration_seconds_count{operation="issue"} 4.0' in metrics
    assert "ca_gateway_db_pool_max_connections 8.0" in metrics


async def test_revocation_is_answered_at_once_and_refreshed_by_the_next_run(
    new_client: Any,
    officer: Any,
    db_pool: Any,
    ca_config: Path,
    state: dict[str, Any],
) -> None:
    cert = state["certs"][1]
    serial = format(cert.serial_number, "x")
    issuer = issuing_cert(ca_config)
    r = await officer.call(
        "POST", f"/api/v1/ra/certificates/{serial}/revocation", {"reason": "keyCompromise"}
    )
    assert r.status == 200, r.text
    client = new_client()
    metrics = (await client.call("GET", "/metrics")).text
    assert 'ca_gateway_certificates_revoked_total{reason="keyCompromise"} 1.0' in metrics
    # the stored response says good: the responder must not serve it
    answer = check_signed(await ask(client, ocsp_request(cert, issuer)), issuer, cert.serial_number)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    stats = await state["job"].run("issuing-1", refresh_margin=timedelta(hours=12))
    assert stats.signed == 1 and stats.errors == 0
    row = await db_pool.fetchrow(
        """SELECT o.der, o.status FROM ocsp_responses o
           JOIN certificates c ON c.id = o.certificate_id WHERE c.serial = $1""",
        serial,
    )
    assert row["status"] == "revoked"
    served = await ask(client, ocsp_request(cert, issuer))
    assert served == bytes(row["der"])
    resp = check_signed(served, issuer, cert.serial_number)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason == x509.ReasonFlags.key_compromise


async def test_coverage_and_lock(db_pool: Any, clock: Any, state: dict[str, Any]) -> None:
    from db.queries import ocsp as q

    issuer_id = await q.issuer_id(db_pool, "issuing-1")
    cov = await q.coverage(db_pool, issuer_id, clock())
    assert cov.certificates == cov.fresh == len(state["certs"])
    async with db_pool.acquire() as conn:  # another gateway holds the job's lock
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", ocsp_presign.LOCK_KEY)
        try:
            assert await state["job"].run_locked(["issuing-1"], refresh_margin=None) is None
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ocsp_presign.LOCK_KEY)
