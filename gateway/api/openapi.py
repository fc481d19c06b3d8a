"""``GET /api/v1/openapi.json``: generated from the application's router, the operation table
(``gateway.api.contract``) and the msgspec models (``gateway.api.models``).

Nothing here is written by hand per endpoint: a route without a contract entry, or an entry
without a route, makes ``spec`` raise (a unit test builds the document of the real application),
so the document cannot drift from what the server routes. Schemas are JSON Schema 2020-12,
as OpenAPI 3.1 takes them.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from gateway.api import common, contract, models
from gateway.api.contract import JSON, Operation
from gateway.signer_errors import RETRY_AFTER_SECONDS

REF = "#/components/schemas/{name}"
PUBLISHED = (
    "/api/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/ca",
    "/crl/",
    "/ocsp",
    "/.well-known/cmp",
)
SUBSCRIBER_SCHEME = "subscriberSession"
OFFICER_SCHEME = "officerSession"
CSRF_SCHEME = "csrfToken"
# codes answered with a Retry-After header
RETRY_LATER = frozenset({"signer_unavailable", "database_unavailable", "rate_limited", "busy"})


def published_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, canonical path) of every route this document describes."""
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or not path.startswith(PUBLISHED):
            continue
        out.append((route.method, path))
    return out


def _ref(model: type) -> dict[str, str]:
    return {"$ref": REF.format(name=model.__name__)}


def _error(status: int, codes: list[str]) -> dict[str, Any]:
    schema = {"allOf": [_ref(models.Error)], "properties": {"error": {"enum": codes}}}
    out: dict[str, Any] = {
        "description": "error; `error` is one of: " + ", ".join(codes),
        "content": {JSON: {"schema": schema}},
    }
    if RETRY_LATER.intersection(codes):
        out["headers"] = {
            "Retry-After": {
                "required": True,
                "description": f"seconds to wait (usually {RETRY_AFTER_SECONDS})",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return out


def _ok(ok: contract.Ok) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if ok.model is not None:
        content[JSON] = {"schema": _ref(ok.model)}
    for media, schema in ok.media.items():
        content[media] = {"schema": schema}
    out: dict[str, Any] = {"description": ok.description}
    if content:
        out["content"] = content
    return out


def _query_params(model: type[msgspec.Struct]) -> list[dict[str, Any]]:
    (_,), components = msgspec.json.schema_components([model], ref_template=REF)
    props = components[model.__name__]["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": schema.get("description", ""),
        }
        for name, schema in props.items()
    ]


def _operation(method: str, op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag]}
    params = [
        {
            "name": p.name,
            "in": p.where,
            "required": p.where == "path",
            "schema": p.schema,
            "description": p.description,
        }
        for p in op.params
    ]
    if op.query is not None:
        params += _query_params(op.query)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(op.body)}}}
    elif op.body_media:
        out["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in op.body_media.items()},
        }
    responses: dict[str, Any] = {str(ok.status): _ok(ok) for ok in op.ok}
    for status, codes in op.error_codes(method).items():
        responses[str(status)] = _error(status, codes)
    out["responses"] = responses
    if op.auth != "none":
        scheme = OFFICER_SCHEME if op.auth in ("officer", "officer-any") else SUBSCRIBER_SCHEME
        requirement: dict[str, list[str]] = {scheme: []}
        if method != "GET":
            requirement[CSRF_SCHEME] = []
        out["security"] = [requirement]
    else:
        out["security"] = []
    return out


def _schemas() -> dict[str, Any]:
    used: set[type] = {models.Error}
    for op in contract.OPERATIONS.values():
        if op.body is not None:
            used.add(op.body)
        used.update(ok.model for ok in op.ok if ok.model is not None)
    _, components = msgspec.json.schema_components(
        sorted(used, key=lambda m: m.__name__), ref_template=REF
    )
    return components


def spec(app: web.Application, public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``; raises ValueError when router and contract differ."""
    routed = published_routes(app)
    missing = sorted(set(routed) - set(contract.OPERATIONS))
    stale = sorted(set(contract.OPERATIONS) - set(routed))
    if missing or stale:
        raise ValueError(
            f"routes without a contract entry: {missing}; contract entries without a route: {stale}"
        )
    https = public_url.startswith("https://")  # the cookie names follow the HTTPS posture
    paths: dict[str, dict[str, Any]] = {}
    for method, path in routed:
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, contract.OPERATIONS[(method, path)]
        )
        paths[path][method.lower()]["operationId"] = re.sub(
            r"[^a-z0-9]+", "_", f"{method} {path}".lower()
        ).strip("_")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Certificate service gateway",
            "version": "1",
            "description": "The HTTP contract of API.md. Errors are "
            '`{"error": code, "message": text}`.',
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                SUBSCRIBER_SCHEME: {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": common.session_cookie_name(common.SUBSCRIBER_COOKIE, https=https),
                    "description": "set by POST /api/v1/session",
                },
                OFFICER_SCHEME: {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": common.session_cookie_name(common.OFFICER_COOKIE, https=https),
                    "description": "set by POST /api/v1/ra/session",
                },
                CSRF_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": common.CSRF_HEADER,
                    "description": "the csrf_token of the login answer; every "
                    "call but GET/HEAD made with a session cookie",
                },
            },
            "schemas": _schemas(),
        },
    }
