"""Applying for, listing, viewing and downloading certificates: gateway → real signer daemon on
a SoftHSM token → PostgreSQL, over HTTP."""

from __future__ import annotations

import asyncio
import base64
import signal
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from db import audit
from gateway import terms
from tests.integration import lifecycle
from tests.integration.conftest import active_subscriber, register
from tests.integration.lifecycle import (
    apply,
    csr_der,
    csr_pem,
    new_key,
    pkilint_problems,
    read_csr_file,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# the real CA, signer daemon and gateway configuration of tests/integration/lifecycle.py
ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process


async def test_me_and_terms(new_client: Any, officer: Any) -> None:
    c, slip, _ = await active_subscriber(new_client, officer)
    me = await c.call("GET", "/api/v1/me")
    assert me.status == 200 and me.json["account"] == slip["account"]
    assert set(me.json["usages"]) == {"signing", "encryption"}
    t = await c.call("GET", "/api/v1/terms")
    assert t.status == 200 and t.json["version"] == terms.VERSION and t.json["text"]


async def test_apply_both_usages_rsa_and_ec(
    new_client: Any, officer: Any, db_pool: Any, tmp_path: Path
) -> None:
    c, slip, _ = await active_subscriber(new_client, officer)
    cn = (await c.call("GET", "/api/v1/me")).json["subscriber_name"]
    for usage, kind in (("signing", "rsa"), ("encryption", "p256")):
        key = new_key(kind)
        r = await apply(c, usage, csr_pem(key))
        assert r.status == 201, r.text
        obj = r.json
        assert obj["status"] == "issued" and obj["usage"] == usage
        assert obj["downloaded"] is False and obj["renewable"] is False
        assert obj["subject"] == f"CN={cn},OU=Citizens,O=Example,C=TW"
        cert = x509.load_pem_x509_certificate(obj["certificate"].encode())
        assert format(cert.serial_number, "x") == obj["serial"]
        assert cert.serial_number.bit_length() >= 64
        assert cert.public_key() == key.public_key()
        assert obj["issuer"] == cert.issuer.rfc4514_string()
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if usage == "signing":
            assert ku.digital_signature and ku.content_commitment
        else:
            assert ku.key_agreement  # EC encryption key
        leaf = tmp_path / f"{usage}.pem"
        leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        assert await pkilint_problems(leaf) == []
    # one valid certificate per usage
    r = await apply(c, "signing", csr_pem(new_key("p384")))
    assert r.status == 409 and r.json["error"] == "already_has_valid"
    listed = (await c.call("GET", "/api/v1/certificates")).json["certificates"]
    assert sorted(x["usage"] for x in listed) == ["encryption", "signing"]
    async with db_pool.acquire() as conn:
        accepted = await conn.fetchval(
            """SELECT count(*) FROM terms_acceptances t JOIN accounts a ON a.id = t.account_id
               WHERE a.account = $1 AND t.terms_version = $2""",
            slip["account"],
            terms.VERSION,
        )
        issued = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'certificate_issued' AND actor = $1",
            slip["account"],
        )
    assert accepted == 1 and issued == 2
    # the operators' dashboards see it: issued certificates by profile and key, and latency
    metrics = (await c.call("GET", "/metrics")).text
    for line in (
        'ca_gateway_certificates_issued_total{key="rsa2048",profile="signing"}',
        'ca_gateway_certificates_issued_total{key="p256",profile="encryption"}',
    ):
        assert any(
            m.startswith(line) and float(m.split()[-1]) >= 1 for m in metrics.splitlines()
        ), line
    assert 'ca_gateway_issuance_duration_seconds_count{operation="issue"}' in metrics


async def test_rsa_encryption_and_der_csr(new_client: Any, officer: Any) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    pem = csr_pem(new_key("rsa"))
    r = await apply(c, "encryption", base64.b64encode(csr_der(pem)).decode())
    assert r.status == 201, r.text
    cert = x509.load_pem_x509_certificate(r.json["certificate"].encode())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment and ku.data_encipherment


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("garbage.pem", "bad_csr"),
        ("truncated.pem", "bad_csr"),
        ("wrong-signature.pem", "pop_failed"),
        ("rsa1024.pem", "weak_key"),
        ("rsa-e3.pem", "weak_key"),
        ("secp256k1.pem", "weak_key"),
        ("p521.pem", "weak_key"),
        ("ed25519.pem", "weak_key"),
    ],
)
async def test_bad_csrs(new_client: Any, officer: Any, fixture: str, code: str) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    r = await apply(c, "signing", read_csr_file(fixture))
    assert r.status == 400, r.text
    assert r.json["error"] == code


async def test_field_errors(new_client: Any, officer: Any) -> None:
    slip = await register(officer, usages=["signing"])
    c = new_client()
    assert (await c.login(slip["account"], slip["initial_password"])).status == 200
    r = await apply(c, "signing", csr_pem(new_key("p256")))
    assert r.status == 403 and r.json["error"] == "password_change_required"
    await c.call(
        "POST",
        "/api/v1/password",
        {"old_password": slip["initial_password"], "new_password": "s3cret-pw"},
    )
    csr = csr_pem(new_key("p256"))
    r = await apply(c, "encryption", csr)
    assert r.status == 403 and r.json["error"] == "usage_not_allowed"
    r = await apply(c, "authentication", csr)
    assert r.status == 400 and r.json["error"] == "invalid_field"
    r = await apply(c, "signing", csr, terms_version="1999-01")
    assert r.status == 400 and r.json["error"] == "terms_not_accepted"
    r = await c.call("POST", "/api/v1/certificates", {"usage": "signing", "csr": csr})
    assert r.status == 400 and r.json["error"] == "terms_not_accepted"
    r = await c.call(
        "POST",
        "/api/v1/certificates",
        {"usage": "signing", "csr": 5, "terms_version": terms.VERSION},
    )
    assert r.status == 400 and r.json["error"] == "invalid_field"
    anon = new_client()
    r = await apply(anon, "signing", csr)
    assert r.status == 401


async def test_download_view_and_status(new_client: Any, officer: Any, db_pool: Any) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    obj = (await apply(c, "signing", csr_pem(new_key("p256")))).json
    cid = obj["id"]
    r = await c.call("GET", f"/api/v1/certificates/{cid}")
    assert r.status == 200 and r.json["status"] == "issued"
    r = await c.call("GET", f"/api/v1/certificates/{cid}/certificate")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/x-pem-file")
    assert r.text == obj["certificate"]
    r = await c.call(
        "GET",
        f"/api/v1/certificates/{cid}/certificate",
        headers={"Accept": "application/pkix-cert"},
    )
    assert r.status == 200 and r.headers["Content-Type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(r.body).serial_number == int(obj["serial"], 16)
    viewed = (await c.call("GET", f"/api/v1/certificates/{cid}")).json
    assert viewed["status"] == "valid" and viewed["downloaded"] is True
    assert viewed["renewable"] is False
    r = await c.call("GET", f"/api/v1/certificates/{cid}/renewal")
    assert r.status == 409 and r.json["error"] == "not_renewable"
    # someone else's certificate is not found
    other, _, _ = await active_subscriber(new_client, officer)
    for path in (
        f"/api/v1/certificates/{cid}",
        f"/api/v1/certificates/{cid}/certificate",
        "/api/v1/certificates/999999999",
        "/api/v1/certificates/abc",
    ):
        r = await other.call("GET", path)
        assert r.status == 404 and r.json["error"] == "not_found", path
    async with db_pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'certificate_downloaded' "
            "AND target = $1",
            obj["serial"],
        )
    assert n == 2


async def test_concurrent_applications_of_one_subscriber(
    new_client: Any, officer: Any, db_pool: Any
) -> None:
    """Many applications of one subscriber and usage at once (one batch, or several): exactly
    one certificate; the others get 409 and leave no pending row behind."""
    c, slip, _ = await active_subscriber(new_client, officer)
    other, _, _ = await active_subscriber(new_client, officer)
    results = await asyncio.gather(
        *(apply(c, "signing", csr_pem(new_key("p256"))) for _ in range(6)),
        *(apply(c, "encryption", csr_pem(new_key("p256"))) for _ in range(3)),
        apply(other, "signing", csr_pem(new_key("p256"))),
    )
    signing, encryption, theirs = results[:6], results[6:9], results[9]
    for group in (signing, encryption):
        assert sorted(r.status for r in group) == [201] + [409] * (len(group) - 1)
        assert all(r.json["error"] == "already_has_valid" for r in group if r.status == 409)
    assert theirs.status == 201
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.usage, c.status FROM certificates c JOIN accounts a
               ON a.subscriber_id = c.subscriber_id WHERE a.account = $1""",
            slip["account"],
        )
        assert sorted((r["usage"], r["status"]) for r in rows) == [
            ("encryption", "issued"),
            ("signing", "issued"),
        ]
        accepted = await conn.fetchval(
            """SELECT count(*) FROM terms_acceptances t JOIN accounts a ON a.id = t.account_id
               WHERE a.account = $1""",
            slip["account"],
        )
        assert accepted == 1
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_events WHERE "
                "action = 'certificate_issued' AND target = ANY($1)",
                [r.json["serial"] for r in results if r.status == 201],
            )
        ) == 3


async def test_batched_issuance_extends_the_one_audit_chain(
    new_client: Any, officer: Any, db_pool: Any
) -> None:
    """Applications in flight are stored and audited by one database call per batch, which
    completes the audit hashes in PostgreSQL; with single audit appends racing it, the chain
    still verifies and every certificate has exactly its one event, with its details."""
    subscribers = [await active_subscriber(new_client, officer) for _ in range(6)]

    async def single(i: int) -> None:
        async with db_pool.acquire() as conn, conn.transaction():
            await audit.append(
                conn,
                actor="test",
                action="concurrency",
                target=str(i),
                details={"i": i, "text": "中文 ✓"},
            )

    results = await asyncio.gather(
        *(
            apply(c, usage, csr_pem(new_key("p256")))
            for c, _, _ in subscribers
            for usage in ("signing", "encryption")
        ),
        *(single(i) for i in range(6)),
    )
    answers = [r for r in results if r is not None]
    assert [r.status for r in answers] == [201] * 12
    async with db_pool.acquire() as conn:
        assert (await audit.verify(conn)).ok
        events = await conn.fetch(
            "SELECT id, actor, target, details FROM audit_events "
            "WHERE action = 'certificate_issued' AND target = ANY($1)",
            [r.json["serial"] for r in answers],
        )
    by_serial = {e["target"]: e for e in events}
    assert len(events) == len(by_serial) == 12
    accounts = {slip["account"] for _, slip, _ in subscribers}
    for r in answers:
        event = by_serial[r.json["serial"]]
        assert event["actor"] in accounts
        assert event["details"]["id"] == r.json["id"]
        assert event["details"]["usage"] == r.json["usage"]


async def test_ca_endpoints(new_client: Any) -> None:
    c = new_client()
    r = await c.call("GET", "/ca")
    names = {i["name"]: i for i in r.json["issuers"]}
    assert names["issuing-1"]["active"] is True and names["root-1"]["active"] is False
    r = await c.call("GET", "/ca/issuing-1.crt")
    assert r.status == 200 and r.headers["Content-Type"] == "application/pkix-cert"
    issuing = x509.load_der_x509_certificate(r.body)
    chain = x509.load_pem_x509_certificates((await c.call("GET", "/ca/chain.pem")).body)
    assert chain[0] == issuing and chain[-1].subject == chain[-1].issuer
    assert (await c.call("GET", "/ca/nope.crt")).status == 404


async def test_signer_stopped_during_application(
    new_client: Any, officer: Any, db_pool: Any, signer_process: Any
) -> None:
    """Runs last in this module: it stops the module's signer daemon."""
    c, _, _ = await active_subscriber(new_client, officer)
    signer_process.send_signal(signal.SIGSTOP)  # the daemon hangs with the request in hand
    try:
        r = await apply(c, "signing", csr_pem(new_key("p256")))
    finally:
        signer_process.send_signal(signal.SIGCONT)
        signer_process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(signer_process.wait, 15)
    assert r.status == 503 and r.json["error"] == "signer_unavailable"
    assert int(r.headers["Retry-After"]) > 0
    r = await apply(c, "signing", csr_pem(new_key("p256")))  # signer gone: refused at once
    assert r.status == 503 and "Retry-After" in r.headers
    async with db_pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM certificates WHERE status = 'issued' AND der IS NULL"
            )
            == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM certificates WHERE status = 'failed'") == 2
        assert (
            await conn.fetchval("SELECT count(*) FROM certificates WHERE status = 'pending'") == 0
        )
    assert (await c.call("GET", "/api/v1/certificates")).json["certificates"] == []
