"""RA revocation, CRLs and the OCSP responder, checked with the openssl CLI against files
fetched over HTTP (an EC P-256 CA here; the other lifecycle modules use RSA)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from gateway import appkeys
from tests.integration import lifecycle
from tests.integration.conftest import active_subscriber
from tests.integration.lifecycle import (
    apply,
    csr_pem,
    new_key,
    pkilint_problems,
    run,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# the real CA, signer daemon and gateway configuration of tests/integration/lifecycle.py
ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process
CA_KEY_TYPE = "p256"
PEM = serialization.Encoding.PEM


async def _files(c: Any, tmp: Path, leaf_pem: str) -> dict[str, Path]:
    chain = (await c.call("GET", "/ca/chain.pem")).body
    crl = await c.call("GET", "/crl/issuing-1.crl")
    assert crl.status == 200 and crl.headers["Content-Type"] == "application/pkix-crl"
    issuing = (await c.call("GET", "/ca/issuing-1.crt")).body
    out = {
        "chain": tmp / "chain.pem",
        "crl": tmp / "crl.pem",
        "leaf": tmp / "leaf.pem",
        "issuing": tmp / "issuing.pem",
    }
    out["chain"].write_bytes(chain)
    out["crl"].write_bytes(x509.load_der_x509_crl(crl.body).public_bytes(PEM))
    out["leaf"].write_text(leaf_pem)
    out["issuing"].write_bytes(x509.load_der_x509_certificate(issuing).public_bytes(PEM))
    return out


async def _openssl_ocsp(base_url: str, f: dict[str, Path]) -> str:
    code, out = await run(
        "openssl",
        "ocsp",
        "-issuer",
        f["issuing"],
        "-cert",
        f["leaf"],
        "-url",
        f"{base_url}/ocsp",
        "-CAfile",
        f["chain"],
    )
    assert code == 0, out
    assert "Response verify OK" in out, out
    return out


def _crl(body: bytes) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(body)


async def test_verify_ocsp_revoke_crl(
    new_client: Any, officer: Any, base_url: str, tmp_path: Path, db_pool: Any
) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    r = await apply(c, "signing", csr_pem(new_key("rsa")))
    assert r.status == 201, r.text
    obj = r.json
    leaf = (await c.call("GET", f"/api/v1/certificates/{obj['id']}/certificate")).text
    f = await _files(c, tmp_path, leaf)
    assert await pkilint_problems(f["leaf"]) == []
    first_crl = _crl((await c.call("GET", "/crl/issuing-1.crl")).body)

    code, out = await run(
        "openssl", "verify", "-crl_check", "-CAfile", f["chain"], "-CRLfile", f["crl"], f["leaf"]
    )
    assert code == 0 and "OK" in out, out
    assert f"{f['leaf']}: good" in await _openssl_ocsp(base_url, f)

    r = await officer.call(
        "POST", f"/api/v1/ra/certificates/{obj['serial']}/revocation", {"reason": "keyCompromise"}
    )
    assert r.status == 200, r.text
    assert r.json["status"] == "revoked" and r.json["renewable"] is False
    assert r.json["revocation_reason"] == "keyCompromise" and r.json["revoked_at"].endswith("Z")
    # OCSP at once
    out = await _openssl_ocsp(base_url, f)
    assert f"{f['leaf']}: revoked" in out and "keyCompromise" in out, out
    # the served CRL already lists it, with a higher CRL number
    crl = _crl((await c.call("GET", "/crl/issuing-1.crl")).body)
    entry = crl.get_revoked_certificate_by_serial_number(int(obj["serial"], 16))
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > first_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert crl.next_update_utc is not None and crl.last_update_utc is not None
    assert (crl.next_update_utc - crl.last_update_utc).total_seconds() == 24 * 3600
    f = await _files(c, tmp_path, leaf)
    code, out = await run(
        "openssl", "verify", "-crl_check", "-CAfile", f["chain"], "-CRLfile", f["crl"], f["leaf"]
    )
    assert code != 0 and "certificate revoked" in out, out
    # the subscriber sees it revoked; a new application of that usage is allowed again
    mine = (await c.call("GET", f"/api/v1/certificates/{obj['id']}")).json
    assert mine["status"] == "revoked"
    assert (mine["revoked_at"], mine["revocation_reason"]) == (
        r.json["revoked_at"],
        "keyCompromise",
    )
    assert (await apply(c, "signing", csr_pem(new_key("p256")))).status == 201
    async with db_pool.acquire() as conn:
        ev = await conn.fetchrow(
            "SELECT actor, details FROM audit_events "
            "WHERE action = 'certificate_revoked' AND target = $1",
            obj["serial"],
        )
    assert ev["actor"] == "ra-test" and ev["details"]["reason"] == "keyCompromise"


async def test_revocation_errors(new_client: Any, officer: Any) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    serial = (await apply(c, "encryption", csr_pem(new_key("p256")))).json["serial"]
    path = f"/api/v1/ra/certificates/{serial}/revocation"
    r = await officer.call("POST", path, {"reason": "becauseISaidSo"})
    assert r.status == 400 and r.json["error"] == "invalid_field"
    r = await officer.call("POST", path, {})
    assert r.status == 400 and r.json["error"] == "invalid_field"
    r = await c.call("POST", path, {"reason": "unspecified"})  # a subscriber session
    assert r.status == 401 and r.json["error"] == "unauthenticated"
    r = await officer.call(
        "POST", "/api/v1/ra/certificates/abcdef0123456789/revocation", {"reason": "unspecified"}
    )
    assert r.status == 404 and r.json["error"] == "not_found"
    r = await officer.call(
        "POST", "/api/v1/ra/certificates/XYZ/revocation", {"reason": "unspecified"}
    )
    assert r.status == 404
    r = await officer.call("POST", path, {"reason": "cessationOfOperation"})
    assert r.status == 200
    r = await officer.call("POST", path, {"reason": "keyCompromise"})
    assert r.status == 409 and r.json["error"] == "already_revoked"


def _request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


async def test_ocsp_get_post_nonce_unknown_unauthorized(new_client: Any, officer: Any) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    obj = (await apply(c, "signing", csr_pem(new_key("p256")))).json
    leaf = x509.load_pem_x509_certificate(obj["certificate"].encode())
    issuing = x509.load_der_x509_certificate((await c.call("GET", "/ca/issuing-1.crt")).body)
    nonce = b"\x01" * 16
    req = _request(leaf, issuing, nonce)
    got = []
    r = await c.call("POST", "/ocsp", raw=req, headers={"Content-Type": "application/ocsp-request"})
    got.append(r)
    r = await c.call("GET", "/ocsp/" + quote(base64.b64encode(req).decode(), safe=""))
    got.append(r)
    for r in got:
        assert r.status == 200 and r.headers["Content-Type"] == "application/ocsp-response"
        resp = ocsp.load_der_ocsp_response(r.body)
        assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert resp.serial_number == leaf.serial_number
        assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
        # signed by the issuer's delegated responder, named by the responder ID and included
        (responder,) = resp.certificates
        responder.verify_directly_issued_by(issuing)
        assert (
            resp.responder_key_hash
            == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
        )
        responder.public_key().verify(
            resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256())
        )
    # a serial this CA never issued
    fake = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(issuing.subject)
        .public_key(leaf.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
        .sign(new_key("p256"), hashes.SHA256())
    )
    r = await c.call("POST", "/ocsp", raw=_request(fake, issuing))
    assert ocsp.load_der_ocsp_response(r.body).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    # an issuer that is not ours
    r = await c.call("POST", "/ocsp", raw=_request(leaf, fake))
    assert (
        ocsp.load_der_ocsp_response(r.body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    # garbage, empty and bad base64
    for r in (
        await c.call("POST", "/ocsp", raw=b"\x30\x03garbage"),
        await c.call("POST", "/ocsp", raw=b""),
        await c.call("GET", "/ocsp/%%%not-base64"),
    ):
        assert r.status == 200
        assert (
            ocsp.load_der_ocsp_response(r.body).response_status
            == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        )


async def test_crl_endpoints_and_refresh(new_client: Any, server: Any, clock: Any) -> None:
    c = new_client()
    assert (await c.call("GET", "/crl/nope.crl")).status == 404
    root = await c.call("GET", "/crl/root-1.crl")
    assert (
        root.status == 200
        and _crl(root.body).issuer
        == x509.load_der_x509_certificate((await c.call("GET", "/ca/root-1.crt")).body).subject
    )
    before = _crl((await c.call("GET", "/crl/issuing-1.crl")).body)
    crl_service = server.app[appkeys.CRL]
    assert await crl_service.refresh_due() == 0  # nothing due yet
    clock.advance(301)  # [gateway] crl_refresh_seconds
    try:
        assert await crl_service.refresh_due() >= 1
    finally:
        clock.advance(-301)
    after = _crl((await c.call("GET", "/crl/issuing-1.crl")).body)
    n = x509.CRLNumber
    assert (
        after.extensions.get_extension_for_class(n).value.crl_number
        > before.extensions.get_extension_for_class(n).value.crl_number
    )


async def _crl_pem(c: Any, name: str) -> bytes:
    r = await c.call("GET", f"/crl/{name}.crl")
    assert r.status == 200 and r.headers["Content-Type"] == "application/pkix-crl", r.text
    return _crl(r.body).public_bytes(PEM)


async def test_chain_checks_with_the_root_crl_and_the_issuing_crl(
    new_client: Any,
    officer: Any,
    tmp_path: Path,
    ca_config: Path,
    server: Any,
) -> None:
    """The issuing CA names the root's CRL, which the ceremony signed and the gateway serves:
    a relying party that checks every certificate of the chain (-crl_check_all) needs both
    CRLs, and a root CRL listing the issuing CA makes the end-entity certificate fail."""
    c, _, _ = await active_subscriber(new_client, officer)
    obj = (await apply(c, "signing", csr_pem(new_key("p256")))).json
    f = await _files(c, tmp_path, obj["certificate"])
    issuing = x509.load_pem_x509_certificate(f["issuing"].read_bytes())
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value.endswith("/crl/root-1.crl")
    crls = tmp_path / "crls.pem"
    # an issuing CRL dated by this module's clock
    crl_service, issuers = server.app[appkeys.CRL], server.app[appkeys.ISSUERS]
    await crl_service.regenerate(issuers.ids["issuing-1"])

    async def verify(*names: str) -> tuple[int, str]:
        crls.write_bytes(b"".join([await _crl_pem(c, n) for n in names]))
        return await run(
            "openssl",
            "verify",
            "-crl_check_all",
            "-CAfile",
            f["chain"],
            "-CRLfile",
            crls,
            f["leaf"],
        )

    code, out = await verify("root-1", "issuing-1")
    assert code == 0 and "OK" in out, out
    code, out = await verify("issuing-1")  # without the root's CRL the chain cannot be checked
    assert code != 0 and "unable to get certificate CRL" in out, out
    r = await c.call("GET", "/crl/root-1.crl")
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    # the security officer revokes the issuing CA in a root CRL ceremony (the real ca-keys)
    folder = ca_config.parent / "ca"
    kept = {p: p.read_bytes() for p in (folder / "root-1.crl", folder / "root-1.crl-state.toml")}
    try:
        code, out = await run(
            lifecycle.BIN / "ca-keys",
            "root-crl",
            "--config",
            ca_config,
            "--revoke",
            "issuing-1",
            "--reason",
            "keyCompromise",
        )
        assert code == 0, out
        root_crl = _crl((await c.call("GET", "/crl/root-1.crl")).body)
        assert root_crl.get_revoked_certificate_by_serial_number(issuing.serial_number)
        number = root_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert number == 2
        code, out = await verify("root-1", "issuing-1")
        assert code != 0 and "certificate revoked" in out, out
    finally:
        for path, data in kept.items():
            path.write_bytes(data)
    code, out = await verify("root-1", "issuing-1")
    assert code == 0, out


async def test_no_ocsp_for_the_offline_root(new_client: Any) -> None:
    """The root key is offline, so nobody answers OCSP for the certificates it issued (the
    issuing CAs): their status is in the root CRL."""
    c = new_client()
    root = x509.load_der_x509_certificate((await c.call("GET", "/ca/root-1.crt")).body)
    issuing = x509.load_der_x509_certificate((await c.call("GET", "/ca/issuing-1.crt")).body)
    r = await c.call("POST", "/ocsp", raw=_request(issuing, root))
    assert (
        ocsp.load_der_ocsp_response(r.body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
