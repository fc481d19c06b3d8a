"""OpenAPI 3 description of the whole contract of API.md (later endpoints included)."""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway import terms

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}
DT = {"type": "string", "format": "date-time"}


def _err(*codes: str) -> dict[str, Any]:
    return {"description": "error, `error` is one of: " + ", ".join(codes),
            "content": {JSON: {"schema": _ref("Error")}}}


def _ok(schema: dict[str, Any] | None, description: str = "success",
        media: str = JSON) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {media: {"schema": schema}}}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        auth: str | None = None, params: list[dict[str, Any]] | None = None,
        tag: str = "public") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if auth == "subscriber":
        op["security"] = [{"subscriberSession": []}]
    elif auth == "officer":
        op["security"] = [{"officerSession": []}]
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": S,
            "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _retry_later() -> dict[str, Any]:
    out = _err("signer_unavailable")
    out["headers"] = {"Retry-After": {"schema": I, "description": "seconds"}}
    return out


def _retry(code: str) -> dict[str, Any]:
    """429 ``rate_limited`` / 503 ``busy`` (docs/API-extensions.md): retry after Retry-After."""
    out = _err(code)
    out["headers"] = {"Retry-After": {"schema": I, "description": "seconds"}}
    return out


# logins and password changes: over a [ratelimit] limit, or the Argon2 queue full
ABUSE = {"429": _retry("rate_limited"), "503": _retry("busy")}
AUTH_ERRORS = {"401": _err("unauthenticated"), "403": _err("csrf_failed")}
SUB_ERRORS = {"401": _err("unauthenticated"),
              "403": _err("csrf_failed", "password_change_required")}


@cache
def _paths() -> dict[str, Any]:
    cert = _ref("Certificate")
    cert_id = _path_param("id", "certificate id")
    apply_body = _obj({"usage": {"enum": ["signing", "encryption"]}, "csr": S,
                       "terms_version": S}, ["usage", "csr", "terms_version"])
    renew_body = _obj({"csr": S, "challenge": S, "signature": S, "terms_version": S},
                      ["csr", "challenge", "signature", "terms_version"])
    subscriber_new = _obj(
        {"id_number": S, "name": S, "email": S, "phone": S, "address": S,
         "subject": _obj({"cn": S, "ou": {"type": "array", "items": S}, "o": S,
                          "c": {"type": "string", "default": "TW"}}, ["cn"]),
         "usages": {"type": "array", "items": {"enum": ["signing", "encryption"]}}},
        ["id_number", "name", "email", "subject", "usages"],
    )
    slip = _obj({"subscriber_id": I, "account": S, "initial_password": S})
    slip_html = {"text/html": {"schema": S}}
    return {
        "/healthz": {"get": _op("liveness", {"200": _ok(_obj({"status": S}))})},
        "/readyz": {"get": _op("readiness: database and at least one signer answer",
                               {"200": _ok(_obj({"status": S})), "503": _err("not_ready")})},
        "/metrics": {"get": _op("Prometheus metrics (text format 0.0.4)",
                                {"200": _ok(S, media="text/plain")})},
        "/ca": {"get": _op("issuers", {"200": _ok(_obj({"issuers": {
            "type": "array", "items": _obj({"name": S, "subject": S, "not_before": DT,
                                             "not_after": DT, "active": B,
                                             "role": {"enum": ["root", "issuing"]}})}}))})},
        "/ca/{issuer}.crt": {"get": _op("a CA certificate (DER)", {
            "200": _ok(S, media="application/pkix-cert"), "404": _err("not_found")},
            params=[_path_param("issuer", "issuer name")])},
        "/ca/chain.pem": {"get": _op("active issuing CA certificate(s) then the root", {
            "200": _ok(S, media="application/x-pem-file")})},
        "/crl/{issuer}.crl": {"get": _op("current CRL (DER)", {
            "200": _ok(S, media="application/pkix-crl"), "404": _err("not_found")},
            params=[_path_param("issuer", "issuer name")])},
        "/ocsp": {"post": {**_op(
            "OCSP (RFC 6960); errors are unsigned OCSP responses (malformedRequest, "
            "unauthorized, tryLater) with HTTP 200",
            {"200": _ok(S, media="application/ocsp-response")}),
            "requestBody": {"required": True, "content": {
                "application/ocsp-request": {"schema": {"type": "string",
                                                       "format": "binary"}}}}}},
        "/ocsp/{request}": {"get": _op("OCSP (RFC 6960), base64 request in the path", {
            "200": _ok(S, media="application/ocsp-response")},
            params=[_path_param("request", "base64 OCSP request")])},
        "/api/v1/openapi.json": {"get": _op("this document", {"200": _ok(_obj({}))})},
        "/api/v1/captcha": {"get": _op("a new single-use captcha", {
            "200": _ok(_obj({"captcha_id": S, "image": S})), "404": _err("captcha_disabled"),
            "429": _retry("rate_limited")})},
        "/api/v1/session": {
            "post": _op("subscriber login", {
                "200": _ok(_obj({"csrf_token": S, "must_change_password": B})),
                "400": _err("bad_request", "invalid_field", "invalid_captcha"),
                "401": _err("invalid_credentials"), "423": _err("account_locked"),
                "413": _err("too_large"), **ABUSE},
                body=_obj({"account": S, "password": S, "captcha_id": S,
                           "captcha_answer": S}, ["account", "password"]),
                tag="subscriber"),
            "delete": _op("logout", {"204": _ok(None), **SUB_ERRORS}, auth="subscriber",
                          tag="subscriber"),
        },
        "/api/v1/password": {"post": _op("change the portal password", {
            "204": _ok(None), "400": _err("bad_request", "invalid_field", "password_policy"),
            "401": _err("unauthenticated", "invalid_credentials"), "403": _err("csrf_failed"),
            **ABUSE},
            body=_obj({"old_password": S, "new_password": S},
                      ["old_password", "new_password"]),
            auth="subscriber", tag="subscriber")},
        "/api/v1/me": {"get": _op("own registration data", {"200": _ok(_obj(
            {"account": S, "id_number": S, "name": S, "subscriber_name": S, "email": S,
             "phone": S, "address": S, "usages": {"type": "array", "items": S}})),
            **SUB_ERRORS}, auth="subscriber", tag="subscriber")},
        "/api/v1/terms": {"get": _op("current terms of use", {
            "200": _ok(_obj({"version": {"type": "string", "example": terms.VERSION},
                             "text": S})), **SUB_ERRORS}, auth="subscriber",
            tag="subscriber")},
        "/api/v1/certificates": {
            "post": _op("apply for a certificate", {
                "201": _ok(cert),
                "400": _err("bad_request", "invalid_field", "bad_csr", "weak_key", "pop_failed",
                            "terms_not_accepted"),
                "403": _err("usage_not_allowed", "csrf_failed", "password_change_required"),
                "409": _err("already_has_valid"), "503": _retry_later()},
                body=apply_body, auth="subscriber", tag="subscriber"),
            "get": _op("own certificates", {"200": _ok(_obj({"certificates": {
                "type": "array", "items": cert}})), **SUB_ERRORS}, auth="subscriber",
                tag="subscriber"),
        },
        "/api/v1/certificates/{id}": {"get": _op("one certificate", {
            "200": _ok(cert), "404": _err("not_found"), **SUB_ERRORS},
            auth="subscriber", params=[cert_id], tag="subscriber")},
        "/api/v1/certificates/{id}/certificate": {"get": _op(
            "download (PEM, or DER with Accept: application/pkix-cert)", {
                "200": _ok(S, media="application/x-pem-file"), "404": _err("not_found"),
                **SUB_ERRORS}, auth="subscriber", params=[cert_id], tag="subscriber")},
        "/api/v1/certificates/{id}/renewal": {
            "get": _op("renewal challenge", {
                "200": _ok(_obj({"challenge": S, "expires_at": DT})),
                "409": _err("not_renewable"), "404": _err("not_found"), **SUB_ERRORS},
                auth="subscriber", params=[cert_id], tag="subscriber"),
            "post": _op("renew", {
                "201": _ok(cert), "409": _err("not_renewable"),
                "400": _err("bad_challenge", "pop_failed", "key_reuse", "bad_csr", "weak_key",
                            "terms_not_accepted", "invalid_field"),
                "503": _retry_later()},
                body=renew_body, auth="subscriber", params=[cert_id], tag="subscriber"),
        },
        "/api/v1/ra/session": {
            "post": _op("RA officer login", {
                "200": _ok(_obj({"csrf_token": S})), "401": _err("invalid_credentials"),
                "423": _err("account_locked"), "400": _err("bad_request", "invalid_field"),
                **ABUSE},
                body=_obj({"login": S, "password": S}, ["login", "password"]), tag="ra"),
            "delete": _op("RA logout", {"204": _ok(None), **AUTH_ERRORS}, auth="officer",
                          tag="ra"),
        },
        "/api/v1/ra/subscribers": {
            "post": _op("register a subscriber; JSON slip, or the printable zh-TW slip page "
                        "with Accept: text/html", {
                            "201": {"description": "the password slip",
                                    "content": {JSON: {"schema": slip}, **slip_html}},
                            "409": _err("duplicate"),
                            "400": _err("bad_request", "invalid_field"), **AUTH_ERRORS},
                        body=subscriber_new, auth="officer", tag="ra"),
            "get": _op("search subscribers", {"200": _ok(_obj({"subscribers": {
                "type": "array", "items": _ref("Subscriber")}})), **AUTH_ERRORS},
                auth="officer", tag="ra",
                params=[_query("q", S, "case-insensitive substring of id_number, account, "
                                       "name, subject CN or e-mail")]),
        },
        "/api/v1/ra/subscribers/{id}": {"get": _op("one subscriber", {
            "200": _ok(_ref("Subscriber")), "404": _err("not_found"), **AUTH_ERRORS},
            auth="officer", params=[_path_param("id", "subscriber id")], tag="ra")},
        "/api/v1/ra/subscribers/{id}/password-reset": {"post": _op(
            "new slip password; unlocks and forces a change", {
                "200": {"description": "the password slip",
                        "content": {JSON: {"schema": _obj({"account": S,
                                                           "initial_password": S})},
                                    **slip_html}},
                "404": _err("not_found"), **AUTH_ERRORS},
            auth="officer", params=[_path_param("id", "subscriber id")], tag="ra")},
        "/api/v1/ra/certificates/{serial}/revocation": {"post": _op("revoke", {
            "200": _ok(cert), "409": _err("already_revoked"), "400": _err("invalid_field"),
            "404": _err("not_found"), **AUTH_ERRORS},
            body=_obj({"reason": {"enum": ["unspecified", "keyCompromise",
                                           "affiliationChanged", "superseded",
                                           "cessationOfOperation", "privilegeWithdrawn"]}},
                      ["reason"]),
            auth="officer", params=[_path_param("serial", "lower-case hex serial")], tag="ra")},
        "/api/v1/ra/officers": {"get": _op("RA officers and their lock state", {
            "200": _ok(_obj({"officers": {"type": "array", "items": _ref("Officer")}})),
            **AUTH_ERRORS}, auth="officer", tag="ra")},
        "/api/v1/ra/officers/{login}/unlock": {"post": _op(
            "unlock an officer locked by failed logins (needs the unlock right; audited)", {
                "200": _ok(_ref("Officer")), "404": _err("not_found"),
                "401": _err("unauthenticated"), "403": _err("csrf_failed", "forbidden")},
            auth="officer", params=[_path_param("login", "officer login")], tag="ra")},
        "/api/v1/ra/audit": {"get": _op("audit events", {"200": _ok(_obj({"events": {
            "type": "array", "items": _obj({"id": I, "at": DT, "actor": S, "action": S,
                                            "target": S, "details": _obj({})})}})),
            "400": _err("invalid_field"), **AUTH_ERRORS},
            auth="officer", tag="ra",
            params=[_query("after_id", I, "default 0"),
                    _query("limit", I, "default 100, at most 1000")])},
    }


def spec(public_url: str) -> dict[str, Any]:
    prefix = "__Host-" if public_url.startswith("https://") else ""  # common.session_cookie_name
    return {
        "openapi": "3.0.3",
        "info": {"title": "Certificate service gateway", "version": "1"},
        "servers": [{"url": public_url}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "subscriberSession": {"type": "apiKey", "in": "cookie",
                                      "name": f"{prefix}ca_session"},
                "officerSession": {"type": "apiKey", "in": "cookie",
                                   "name": f"{prefix}ca_ra_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
            "schemas": {
                "Error": _obj({"error": S, "message": S}, ["error", "message"]),
                "Certificate": _obj(
                    {"id": I, "serial": S, "usage": {"enum": ["signing", "encryption"]},
                     "status": {"enum": ["revoked", "superseded", "expired", "issued",
                                         "expiring", "valid"]},
                     "subject": S, "issuer": S, "not_before": DT, "not_after": DT,
                     "downloaded": B, "renewable": B, "certificate": S}),
                "Officer": _obj({"login": S, "locked": B, "failed_attempts": I,
                                 "can_unlock": B}),
                "Subscriber": _obj(
                    {"subscriber_id": I, "account": S, "id_number": S, "name": S, "email": S,
                     "phone": S, "address": S,
                     "subject": _obj({"cn": S, "ou": {"type": "array", "items": S}, "o": S,
                                      "c": S}),
                     "usages": {"type": "array", "items": S}, "locked": B,
                     "failed_attempts": I, "must_change_password": B,
                     "certificates": {"type": "array", "items": _ref("Certificate")}}),
            },
        },
    }
