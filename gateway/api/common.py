"""Request parsing, JSON answers, cookies and the authentication checks shared by handlers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway import keys
from gateway.errors import ApiError, Kind
from gateway.services.accounts import OfficerAuth, SubscriberAuth
from gateway.services.ratelimit import source_address

SUBSCRIBER_COOKIE = "ca_session"
OFFICER_COOKIE = "ca_ra_session"
HOST_PREFIX = "__Host-"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 413 beyond the limit, 400 ``bad_request`` if not an object."""
    body = await request.read()  # raises 413 beyond client_max_size
    if not body.strip():
        raise ApiError(Kind.BAD_REQUEST, "a JSON object body is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(Kind.BAD_REQUEST, "the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(Kind.BAD_REQUEST, "the body must be a JSON object")
    return data


def invalid(field: str, message: str) -> ApiError:
    return ApiError(Kind.INVALID_FIELD, message, field=field)


def text_field(
    data: dict[str, Any], name: str, *, required: bool = True, max_len: int = 200,
    min_len: int = 1, default: str = "", allow_control: bool = False,
) -> str:
    if name not in data or data[name] is None:
        if required:
            raise invalid(name, f"{name} is required")
        return default
    value = data[name]
    if not isinstance(value, str):
        raise invalid(name, f"{name} must be a string")
    if not allow_control:
        value = value.strip()
        if _CONTROL.search(value):
            raise invalid(name, f"{name} contains control characters")
    if len(value) > max_len or (required and len(value) < min_len):
        raise invalid(name, f"{name} must have {min_len} to {max_len} characters")
    return value


def int_param(request: web.Request, name: str, default: int, *, minimum: int, maximum: int
              ) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise invalid(name, f"{name} must be a non-negative integer")
    value = int(raw)
    if value < minimum or value > maximum:
        raise invalid(name, f"{name} must be between {minimum} and {maximum}")
    return value


def client_address(request: web.Request) -> str:
    """The client's address for rate limits and the audit log: the peer, or what a trusted
    proxy says in ``[ratelimit] proxy_header`` (off by default)."""
    return source_address(request.remote, request.headers, request.app[keys.CONFIG].ratelimit)


def session_cookie_name(base: str, *, https: bool) -> str:
    """``__Host-<base>`` when the gateway is served over HTTPS: browsers keep such a cookie
    only with Secure, Path=/ and no Domain, so no other host (a sibling subdomain, a
    plain-HTTP man in the middle) can set or shadow it. Plain ``<base>`` on http:// (dev)."""
    return HOST_PREFIX + base if https else base


def session_token(request: web.Request, base: str) -> str | None:
    """The session cookie's value under this gateway's name for it. In HTTPS mode only the
    ``__Host-`` cookie counts: an unprefixed one may have been planted by another host."""
    https = request.app[keys.CONFIG].https
    return request.cookies.get(session_cookie_name(base, https=https))


def set_session_cookie(request: web.Request, response: web.StreamResponse, name: str,
                       token: str) -> None:
    https = request.app[keys.CONFIG].https
    response.set_cookie(session_cookie_name(name, https=https), token, path="/",
                        httponly=True, samesite="Strict", secure=https)


def clear_session_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    https = request.app[keys.CONFIG].https
    response.del_cookie(session_cookie_name(name, https=https), path="/", secure=https,
                        httponly=True, samesite="Strict")


def _check_csrf(request: web.Request, auth: SubscriberAuth | OfficerAuth) -> None:
    if request.method not in SAFE_METHODS and not auth.session.csrf_ok(
        request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(Kind.CSRF_FAILED, f"missing or wrong {CSRF_HEADER} header")


async def subscriber(request: web.Request, *, during_forced_change: bool = False
                     ) -> SubscriberAuth:
    """Session first, then CSRF, then the forced password change."""
    auth = await keys.runtime(request).accounts.authenticate(
        session_token(request, SUBSCRIBER_COOKIE)
    )
    _check_csrf(request, auth)
    if auth.account.must_change_password and not during_forced_change:
        raise ApiError(Kind.PASSWORD_CHANGE_REQUIRED, "change the password first")
    return auth


async def officer(request: web.Request) -> OfficerAuth:
    auth = await keys.runtime(request).accounts.authenticate_officer(
        session_token(request, OFFICER_COOKIE)
    )
    _check_csrf(request, auth)
    return auth
