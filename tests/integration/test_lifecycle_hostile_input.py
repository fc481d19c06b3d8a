"""Hostile and out-of-order input on the certificate lifecycle endpoints: always a 4xx with an
error code (or, for OCSP, an OCSP error response), never a 500, and nothing half-written."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.x509 import ocsp

from tests.integration import lifecycle
from tests.integration.conftest import active_subscriber
from tests.integration.lifecycle import apply, csr_pem, new_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process

JUNK_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    [],
    {},
    "",
    "x" * 70000,
    "\u0000",
    "../../etc/passwd",
    {"$ne": 1},
]


def assert_api_error(r: Any, *statuses: int) -> None:
    assert r.status < 500, (r.status, r.text)
    if statuses:
        assert r.status in statuses, (r.status, r.text)
    assert r.status >= 400, (r.status, r.text)
    assert isinstance(r.json, dict) and isinstance(r.json.get("error"), str), r.text


async def test_application_fields_of_every_wrong_type(
    new_client: Any, officer: Any, db_pool: Any
) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    good = {
        "usage": "signing",
        "csr": csr_pem(new_key("p256")),
        "terms_version": (await c.call("GET", "/api/v1/terms")).json["version"],
    }
    for field in good:
        for junk in JUNK_VALUES:
            body = dict(good, **{field: junk})
            r = await c.call("POST", "/api/v1/certificates", body)
            assert_api_error(r)
        body = {k: v for k, v in good.items() if k != field}
        assert_api_error(await c.call("POST", "/api/v1/certificates", body), 400)
    for raw in (b"", b"{", b"[]", b"null", b'"csr"', b"\xff\xfe", b"{" * 5000):
        r = await c.call(
            "POST", "/api/v1/certificates", raw=raw, headers={"Content-Type": "application/json"}
        )
        assert_api_error(r)
    # nothing above reached the signer, so nothing may be pending, failed or issued
    n = await db_pool.fetchval("SELECT count(*) FROM certificates")
    assert n == 0


@pytest.mark.parametrize(
    "ident", ["abc", "-1", "0", "99999999999999999999999", "1.5", "%00", "..%2f..%2fetc"]
)
async def test_unknown_or_malformed_certificate_ids(
    new_client: Any, officer: Any, ident: str
) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    for method, path, body in (
        ("GET", f"/api/v1/certificates/{ident}", None),
        ("GET", f"/api/v1/certificates/{ident}/certificate", None),
        ("GET", f"/api/v1/certificates/{ident}/renewal", None),
        (
            "POST",
            f"/api/v1/certificates/{ident}/renewal",
            {"csr": "x", "challenge": "x", "signature": "x", "terms_version": "x"},
        ),
    ):
        assert_api_error(await c.call(method, path, body), 400, 404)


async def test_renewal_bodies_of_every_wrong_type(new_client: Any, officer: Any) -> None:
    c, _, _ = await active_subscriber(new_client, officer)
    key = new_key("p256")
    r = await apply(c, "signing", csr_pem(key))
    assert r.status == 201, r.text
    cid = r.json["id"]
    good = {
        "csr": csr_pem(new_key("p256")),
        "challenge": base64.b64encode(b"x" * 32).decode(),
        "signature": base64.b64encode(b"sig").decode(),
        "terms_version": "2026-01",
    }
    for field in good:
        for junk in [*JUNK_VALUES, "not base64!!", "=" * 8]:
            r = await c.call(
                "POST", f"/api/v1/certificates/{cid}/renewal", dict(good, **{field: junk})
            )
            assert_api_error(r)
    # the certificate is untouched: still issued, still this subscriber's
    r = await c.call("GET", f"/api/v1/certificates/{cid}")
    assert r.status == 200 and r.json["status"] in ("issued", "valid")


async def test_revocation_input(officer: Any) -> None:
    for serial in ("ABC", "0abc", "xyz", "1" * 200, "-5"):
        r = await officer.call(
            "POST", f"/api/v1/ra/certificates/{serial}/revocation", {"reason": "keyCompromise"}
        )
        assert_api_error(r, 400, 404)
    for reason in [*JUNK_VALUES, "KeyCompromise", "removeFromCRL", "certificateHold"]:
        r = await officer.call(
            "POST", "/api/v1/ra/certificates/abc123/revocation", {"reason": reason}
        )
        assert_api_error(r, 400, 404, 413)  # 413: the 70,000-character reason


async def test_public_endpoints_with_hostile_paths(new_client: Any) -> None:
    c = new_client()
    for path in (
        "/ca/nope.crt",
        "/ca/..%2f..%2fsecrets.crt",
        "/crl/nope.crl",
        "/crl/..%2fca.crl",
        "/ca/ISSUING-1.crt",
    ):
        r = await c.call("GET", path)
        assert r.status == 404, (path, r.status)
    for path in ("/ocsp/not-base64!!", "/ocsp/" + "A" * 5000, "/ocsp/AAAA"):
        r = await c.call("GET", path)
        assert r.status < 500, (path, r.status)
        if r.status == 200:
            resp = ocsp.load_der_ocsp_response(r.body)
            assert resp.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    for raw in (b"", b"\x30\x00", b"\x30" + b"\x80" * 100, b"A" * 70000):
        r = await c.call(
            "POST", "/ocsp", raw=raw, headers={"Content-Type": "application/ocsp-request"}
        )
        assert r.status < 500, r.status
