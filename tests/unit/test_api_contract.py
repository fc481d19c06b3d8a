"""The generated OpenAPI document, the request models and the signer-error table, without a
database: the document is built from the real application's router."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from gateway.api import contract, decode, models
from gateway.api.openapi import published_routes, spec
from gateway.app import make_app
from gateway.config import GatewayConfig
from gateway.errors import Kind
from gateway.middlewares import errors
from gateway.signer_errors import SIGNER_ERRORS, to_api_error
from signer.errors import ErrorKind, SignerError

TRANSIENT = {
    ErrorKind.UNAVAILABLE,
    ErrorKind.OVERLOADED,
    ErrorKind.DEADLINE_EXCEEDED,
    ErrorKind.WORKER_FAILED,
    ErrorKind.TOKEN_UNAVAILABLE,
}
PERMANENT = {
    ErrorKind.PROFILE_VIOLATION,
    ErrorKind.BAD_REQUEST,
    ErrorKind.UNKNOWN_PROFILE,
    # the signer's bounds on CRLs and OCSP answers (signer/issuance/bounds.py)
    ErrorKind.VALIDITY_TOO_LONG,
    ErrorKind.CLOCK_SKEW,
    ErrorKind.REVOCATION_IN_FUTURE,
    ErrorKind.CRL_NUMBER_NOT_INCREASING,
}


@pytest.fixture(scope="module")
def app() -> web.Application:
    return make_app(GatewayConfig(captcha=False, database_url="postgresql://unused/unused"))


@pytest.fixture(scope="module")
def doc(app: web.Application) -> dict[str, Any]:
    return spec(app, "http://127.0.0.1:8443")


def test_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"] == "3.1.0"


def test_every_route_is_described_and_nothing_else(
    app: web.Application, doc: dict[str, Any]
) -> None:
    routed = {(m, p) for m, p in published_routes(app)}
    described = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert routed == described == set(contract.OPERATIONS)
    assert len(routed) >= 30


def test_router_and_contract_must_agree(app: web.Application, monkeypatch: Any) -> None:
    monkeypatch.delitem(contract.OPERATIONS, ("GET", "/api/v1/me"))
    with pytest.raises(ValueError, match="without a contract entry"):
        spec(app, "http://x")


def _ops(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]


def _codes(op: dict[str, Any], status: int) -> list[str]:
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    return schema["properties"]["error"]["enum"]


def test_sessions_csrf_and_auth_errors(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["csrfToken"] == {
        **schemes["csrfToken"],
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
    }
    assert schemes["subscriberSession"]["in"] == "cookie"
    assert schemes["officerSession"]["in"] == "cookie"
    with_session = 0
    for method, path, op in _ops(doc):
        if not op["security"]:
            continue
        with_session += 1
        (requirement,) = op["security"]
        assert ("csrfToken" in requirement) == (method != "GET"), (method, path)
        assert "unauthenticated" in _codes(op, 401), path
        if method != "GET":
            assert "csrf_failed" in _codes(op, 403), (method, path)
        if path.startswith("/api/v1/ra/"):
            assert "officerSession" in requirement
        exempt = path in ("/api/v1/me", "/api/v1/terms", "/api/v1/password") or (
            (method, path) in (("DELETE", "/api/v1/session"), ("GET", "/api/v1/session"))
        )
        if "subscriberSession" in requirement and not exempt:
            assert "password_change_required" in _codes(op, 403), (method, path)
    assert with_session >= 17


def test_bodies_errors_and_retry_after(doc: dict[str, Any]) -> None:
    for method, path, op in _ops(doc):
        body = op.get("requestBody", {}).get("content", {})
        if "application/json" in body:
            assert {"bad_request", "invalid_field"} <= set(_codes(op, 400)), (method, path)
            assert _codes(op, 413) == ["too_large"]
        if "{" in path:
            assert "404" in op["responses"], (method, path)
        if "503" in op["responses"] and "signer_unavailable" in _codes(op, 503):
            assert op["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    apply = doc["paths"]["/api/v1/certificates"]["post"]
    assert set(_codes(apply, 400)) >= {
        "bad_csr",
        "weak_key",
        "pop_failed",
        "terms_not_accepted",
        "invalid_field",
    }
    assert _codes(apply, 503) == ["signer_unavailable", "database_unavailable"]
    assert _codes(apply, 409) == ["already_has_valid"]
    renew = doc["paths"]["/api/v1/certificates/{id}/renewal"]["post"]
    assert {"bad_challenge", "key_reuse", "pop_failed"} <= set(_codes(renew, 400))
    download = doc["paths"]["/api/v1/certificates/{id}/certificate"]["get"]
    assert set(download["responses"]["200"]["content"]) == {
        "application/x-pem-file",
        "application/pkix-cert",
    }
    ocsp = doc["paths"]["/ocsp"]["post"]
    assert ocsp["requestBody"]["content"]["application/ocsp-request"]["schema"]["format"] == (
        "binary"
    )
    assert "application/ocsp-response" in ocsp["responses"]["200"]["content"]


def test_schemas_carry_constraints(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    new = schemas["NewSubscriber"]
    assert set(new["required"]) == {"id_number", "name", "email", "subject", "usages"}
    assert new["additionalProperties"] is False
    assert set(new["properties"]["usages"]["items"]["enum"]) == {"signing", "encryption"}
    assert schemas["NewSubject"]["properties"]["cn"]["maxLength"] == 64
    reasons = schemas["Revocation"]["properties"]["reason"]["enum"]
    assert "keyCompromise" in reasons and len(reasons) == 6
    cert = schemas["Certificate"]
    assert set(cert["required"]) == {
        "id",
        "serial",
        "usage",
        "status",
        "subject",
        "issuer",
        "not_before",
        "not_after",
        "downloaded",
        "renewable",
        "certificate",
    }
    audit = doc["paths"]["/api/v1/ra/audit"]["get"]["parameters"]
    limit = next(p for p in audit if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"subject": {"cn": ""}, "usages": ["signing"]}', "subject.cn"),
        (
            b'{"id_number": "A1", "name": "n", "email": "a@b.tw", "subject": {}, '
            b'"usages": ["signing"]}',
            "subject.cn",
        ),
        (
            b'{"id_number": "A1", "name": "n", "email": "a@b.tw", "subject": {"cn": "x", "zz": 1}, '
            b'"usages": ["signing"]}',
            "subject.zz",
        ),
        (
            b'{"id_number": "A1", "name": "n", "email": "a@b.tw", "subject": {"cn": "x"}, '
            b'"usages": ["signing", "archery"]}',
            "usages",
        ),
        (
            b'{"id_number": "A1", "name": "n", "email": "a@b.tw", "subject": {"cn": "x", '
            b'"ou": ["' + b"o" * 65 + b'"]}, "usages": ["signing"]}',
            "subject.ou",
        ),
        (
            b'{"id_number": "A1", "name": "n", "email": "not-mail", "subject": {"cn": "x"}, '
            b'"usages": ["signing"]}',
            "email",
        ),
        (b'{"id_number": 7}', "id_number"),
        (b'{"id_number": "A\\u0000", "name": "n"}', "id_number"),
    ],
)
def test_invalid_field_names_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(raw, type=models.NewSubscriber)
    assert decode.field_of(info.value) == field


def test_registration_defaults_and_cleaning() -> None:
    body = msgspec.json.decode(
        b'{"id_number": " A123 ", "name": "n", "email": "a@b.tw", '
        b'"subject": {"cn": "x", "ou": "one", "c": "tw"}, "usages": ["signing"]}',
        type=models.NewSubscriber,
    )
    assert (body.id_number, body.subject.ou, body.subject.c) == ("A123", ["one"], "TW")
    body = msgspec.json.decode(
        b'{"id_number": "A", "name": "n", "email": "a@b.tw", '
        b'"subject": {"cn": "x"}, "usages": ["signing"]}',
        type=models.NewSubscriber,
    )
    assert body.subject.c == "TW"


def test_signer_error_table_is_complete() -> None:
    assert set(SIGNER_ERRORS) == set(ErrorKind)


@pytest.mark.parametrize("kind", sorted(ErrorKind))
def test_signer_errors_map_once(kind: ErrorKind) -> None:
    err = to_api_error(SignerError(kind, "detail that must not reach the client"))
    if kind in TRANSIENT:
        assert err.kind is Kind.SIGNER_UNAVAILABLE and err.status == 503
        assert err.headers == {"Retry-After": "10"}
    if kind in PERMANENT:
        assert err.status in range(400, 501) and err.status != 503
        assert not err.headers
    if kind is ErrorKind.WEAK_KEY:
        assert (err.status, err.kind) == (400, Kind.WEAK_KEY)
    assert "detail" not in err.message


async def test_the_error_middleware_applies_the_table() -> None:
    """A SignerError that reaches the web edge is answered through the table, not as a 500."""
    app = web.Application(middlewares=[errors])

    async def raise_kind(request: web.Request) -> web.Response:
        raise SignerError(ErrorKind(request.match_info["kind"]), "secret detail")

    app.router.add_get("/{kind}", raise_kind)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/overloaded")
        assert (r.status, r.headers["Retry-After"]) == (503, "10")
        assert (await r.json())["error"] == "signer_unavailable"
        r = await client.get("/profile_violation")
        assert r.status == 500 and "Retry-After" not in r.headers
        assert "secret" not in await r.text()
