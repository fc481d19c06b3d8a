"""Regressions of issue 14: inputs any client can send that once answered 500 ``internal``.

Real gateway, real signer daemon on SoftHSM, real PostgreSQL. CSR fixtures are files under
tests/testdata/csr/ (made by tests/testdata/make_csrs.py).
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_alt_modules import rfc6960
from yarl import URL

from config.loader import load
from config.manifest import manifest_path
from gateway import terms
from gateway.config import GatewayConfig, RateLimits
from tests.integration import lifecycle
from tests.integration.conftest import active_subscriber, subscriber_body
from tests.integration.lifecycle import apply, csr_pem, new_key, old_key_signature, read_csr_file

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process
UNLOADABLE_KEYS = ["ec-prime239v1.pem", "ec-secp112r1.pem", "sm2.pem", "unknown-key-oid.pem"]


@pytest.fixture(scope="module")
def gateway_config(app_url: str, ca_config: Path) -> GatewayConfig:
    # certificates inside their renewal window at once (see test_renewal.py)
    return dataclasses.replace(
        GatewayConfig(
            captcha=False,
            database_url=app_url,  # the application role; the owner migrated (conftest)
            migrate_on_start=False,
            manifest_path=manifest_path(load(ca_config, environ={})),
            ratelimit=RateLimits.off(),  # one 127.0.0.1 on a still clock
        ),
        certificate_validity_days=20,
        renewal_window_days=30,
    )


def _error(r: Any) -> tuple[int, str]:
    return r.status, r.json["error"]


@pytest.mark.parametrize("fixture", UNLOADABLE_KEYS)
async def test_apply_with_a_key_cryptography_cannot_load(
    new_client: Any, officer: Any, fixture: str
) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    r = await apply(c, "signing", read_csr_file(fixture))
    assert _error(r) == (400, "weak_key"), r.text


async def _renewable(new_client: Any, officer: Any) -> tuple[Any, Any, dict[str, Any]]:
    c, _, _ = await active_subscriber(new_client, officer)
    key = new_key("p256")
    r = await apply(c, "signing", csr_pem(key))
    assert r.status == 201, r.text
    return c, key, r.json


async def _challenge(c: Any, cid: int) -> str:
    r = await c.call("GET", f"/api/v1/certificates/{cid}/renewal")
    assert r.status == 200, r.text
    return r.json["challenge"]


async def test_renewal_key_reuse_step_with_unloadable_keys(new_client: Any, officer: Any) -> None:
    """The old key signs challenge ‖ csr_der, so the request reaches the key-reuse step, which
    loads the new key: UnsupportedAlgorithm there is weak_key, not 500."""
    c, key, cert = await _renewable(new_client, officer)
    for fixture in UNLOADABLE_KEYS:
        csr = read_csr_file(fixture)
        challenge = await _challenge(c, cert["id"])
        r = await c.call(
            "POST",
            f"/api/v1/certificates/{cert['id']}/renewal",
            {
                "csr": csr,
                "challenge": challenge,
                "signature": old_key_signature(key, challenge, csr),
                "terms_version": terms.VERSION,
            },
        )
        assert _error(r) == (400, "weak_key"), (fixture, r.text)


async def test_renewal_without_terms_version(new_client: Any, officer: Any) -> None:
    c, key, cert = await _renewable(new_client, officer)
    csr = csr_pem(new_key("p256"))
    challenge = await _challenge(c, cert["id"])
    body = {"csr": csr, "challenge": challenge, "signature": old_key_signature(key, challenge, csr)}
    r = await c.call("POST", f"/api/v1/certificates/{cert['id']}/renewal", body)
    assert _error(r) == (400, "terms_not_accepted"), r.text
    # any id: unknown ones are 404, ids that cannot be ids too
    for cid in ("999999", "0", "x1", "1e3", "9" * 30):
        r = await c.call("POST", f"/api/v1/certificates/{cid}/renewal", body)
        assert _error(r) == (404, "not_found"), (cid, r.text)


async def test_renewal_signature_and_challenge_garbage(new_client: Any, officer: Any) -> None:
    c, _key, cert = await _renewable(new_client, officer)
    csr = csr_pem(new_key("p256"))
    path = f"/api/v1/certificates/{cert['id']}/renewal"
    for signature in ("not base64!", "é", "", "AAAA" * 3000, "=" * 7):
        challenge = await _challenge(c, cert["id"])
        r = await c.call(
            "POST",
            path,
            {
                "csr": csr,
                "challenge": challenge,
                "signature": signature,
                "terms_version": terms.VERSION,
            },
        )
        assert _error(r) == (400, "pop_failed"), (signature[:10], r.text)
    for challenge in ("not base64!", "é", "", "AAAA"):
        r = await c.call(
            "POST",
            path,
            {
                "csr": csr,
                "challenge": challenge,
                "signature": "AAAA",
                "terms_version": terms.VERSION,
            },
        )
        assert _error(r) == (400, "bad_challenge"), (challenge, r.text)
    r = await c.call("POST", path, {"csr": 5, "challenge": "x", "signature": "y"})
    assert _error(r) == (400, "invalid_field") and r.json["field"] == "csr"
    r = await c.call("POST", path, {"csr": "x", "challenge": "x", "signature": "y", "extra": 1})
    assert _error(r) == (400, "invalid_field") and r.json["field"] == "extra"


def _two_nonces(request_der: bytes) -> bytes:
    """The request with its nonce extension repeated (pyasn1 re-encodes it)."""
    req, _ = der_decoder.decode(request_der, asn1Spec=rfc6960.OCSPRequest())
    extensions = req["tbsRequest"]["requestExtensions"]
    extensions.append(extensions[0])
    return der_encoder.encode(req)


async def test_ocsp_requests_that_do_not_parse(new_client: Any, officer: Any) -> None:
    c, _, cert = await _renewable(new_client, officer)
    leaf = x509.load_pem_x509_certificate(cert["certificate"].encode())
    issuing = x509.load_der_x509_certificate((await c.call("GET", "/ca/issuing-1.crt")).body)
    good = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuing, hashes.SHA1())
        .add_extension(x509.OCSPNonce(b"\x01" * 16), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    bad = _two_nonces(good)
    with pytest.raises(x509.DuplicateExtension):
        _ = ocsp.load_der_ocsp_request(bad).extensions  # what once escaped as a 500
    b64 = quote(base64.b64encode(bad).decode(), safe="")
    for method, path, raw in (
        ("POST", "/ocsp", bad),
        ("GET", "/ocsp/" + b64, None),
        ("GET", "/oc%73p/" + b64, None),
    ):
        r = await c.call(
            method, path, raw=raw, headers={"Content-Type": "application/ocsp-request"}
        )
        assert r.status == 200, (method, path, r.status, r.body[:200])
        assert r.headers["Content-Type"] == "application/ocsp-response"
        status = ocsp.load_der_ocsp_response(r.body).response_status
        assert status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST, (method, path)


async def test_ocsp_get_with_an_encoded_path(new_client: Any, officer: Any) -> None:
    """/oc%73p/... routes to the OCSP handler (the router decodes the path): it must read the
    request from the raw path whatever the first segment's spelling."""
    c, _, cert = await _renewable(new_client, officer)
    leaf = x509.load_pem_x509_certificate(cert["certificate"].encode())
    issuing = x509.load_der_x509_certificate((await c.call("GET", "/ca/issuing-1.crt")).body)
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuing, hashes.SHA1()).build()
    b64 = quote(base64.b64encode(req.public_bytes(serialization.Encoding.DER)).decode(), safe="")
    for path in ("/oc%73p/" + b64, "/%6F%63%73%70/" + b64, "/ocsp/" + b64):
        status, body = await _get_raw(c, path)
        assert status == 200, (path, status, body[:200])
        resp = ocsp.load_der_ocsp_response(body)
        assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, path
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    for path in ("/oc%73p/", "/oc%73p/%", "/oc%73p/%%%", "/oc%73p/%2F%2F"):
        status, body = await _get_raw(c, path)
        assert status in (200, 404), (path, status, body[:200])


async def _get_raw(c: Any, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (yarl would normalise %73 to s)."""
    async with c.http.get(URL(c.base + path, encoded=True)) as r:
        return r.status, await r.read()


async def test_registration_fields_are_named(officer: Any) -> None:
    cases = [
        ({"subject": {"cn": "x" * 65}}, "subject.cn"),
        ({"subject": {"cn": "ok", "c": "T"}}, "subject.c"),
        ({"subject": {"cn": "ok", "ou": ["a"] * 9}}, "subject.ou"),
        ({"usages": ["signing", "archery"]}, "usages"),
        ({"email": "nobody"}, "email"),
        ({"nickname": "x"}, "nickname"),
        ({"phone": 12345}, "phone"),
        ({"name": "\u0007bell"}, "name"),
    ]
    for over, field in cases:
        body = subscriber_body()
        if "subject" in over:
            body["subject"] = over.pop("subject")
        body.update(over)
        r = await officer.call("POST", "/api/v1/ra/subscribers", body)
        assert _error(r) == (400, "invalid_field"), (field, r.text)
        assert r.json["field"] == field, r.text
    body = subscriber_body()
    del body["subject"]["cn"]
    r = await officer.call("POST", "/api/v1/ra/subscribers", body)
    assert (r.status, r.json["field"]) == (400, "subject.cn")


async def test_query_and_path_parameters(officer: Any) -> None:
    for query, field in (
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("after_id=-1", "after_id"),
        ("limit=1001", "limit"),
    ):
        r = await officer.call("GET", f"/api/v1/ra/audit?{query}")
        assert _error(r) == (400, "invalid_field") and r.json["field"] == field, query
    r = await officer.call("GET", "/api/v1/ra/audit?limit=&after_id=")  # empty: defaults
    assert r.status == 200
    r = await officer.call("GET", "/api/v1/ra/subscribers?q=" + "x" * 201)
    assert _error(r) == (400, "invalid_field") and r.json["field"] == "q"
    r = await officer.call("GET", "/api/v1/ra/subscribers?q=%07")
    assert _error(r) == (400, "invalid_field")
    for sid in ("abc", "-1", "1.5", "9" * 19, "12%0A"):
        r = await officer.call("GET", f"/api/v1/ra/subscribers/{sid}")
        assert _error(r) == (404, "not_found"), sid
        r = await officer.call("POST", f"/api/v1/ra/subscribers/{sid}/password-reset")
        assert _error(r) == (404, "not_found"), sid


async def test_body_limit(officer: Any) -> None:
    r = await officer.call(
        "POST",
        "/api/v1/ra/subscribers",
        raw=b'{"name": "' + b"x" * (65 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert _error(r) == (413, "too_large")
