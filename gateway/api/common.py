"""JSON answers, cookies and the authentication checks shared by handlers."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from aiohttp import web

from db.queries.certificates import CertificateRow
from gateway import appkeys
from gateway.api import models, present
from gateway.errors import ApiError, Kind
from gateway.services.accounts import OfficerAuth, SubscriberAuth
from gateway.services.ratelimit import source_address

SUBSCRIBER_COOKIE = "ca_session"
OFFICER_COOKIE = "ca_ra_session"
HOST_PREFIX = "__Host-"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD"})


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer from a declared model (``gateway.api.models``) or plain data."""
    body = msgspec.json.encode(data) if isinstance(data, msgspec.Struct) else orjson.dumps(data)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def certificate(request: web.Request, row: CertificateRow) -> models.Certificate:
    """The certificate object of API.md for a stored row, as of the injected clock."""
    return present.certificate(
        row, request.app[appkeys.CLOCK](), request.app[appkeys.CONFIG].renewal_window_days
    )


def client_address(request: web.Request) -> str:
    """The client's address for rate limits and the audit log: the peer, or what a trusted
    proxy says in ``[ratelimit] proxy_header`` (off by default)."""
    return source_address(request.remote, request.headers, request.app[appkeys.CONFIG].ratelimit)


def session_cookie_name(base: str, *, https: bool) -> str:
    """``__Host-<base>`` when the gateway is served over HTTPS: browsers keep such a cookie
    only with Secure, Path=/ and no Domain, so no other host (a sibling subdomain, a
    plain-HTTP man in the middle) can set or shadow it. Plain ``<base>`` on http:// (dev)."""
    return HOST_PREFIX + base if https else base


def session_token(request: web.Request, base: str) -> str | None:
    """The session cookie's value under this gateway's name for it. In HTTPS mode only the
    ``__Host-`` cookie counts: an unprefixed one may have been planted by another host."""
    https = request.app[appkeys.CONFIG].https
    return request.cookies.get(session_cookie_name(base, https=https))


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, name: str, token: str
) -> None:
    https = request.app[appkeys.CONFIG].https
    response.set_cookie(
        session_cookie_name(name, https=https),
        token,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=https,
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    https = request.app[appkeys.CONFIG].https
    response.del_cookie(
        session_cookie_name(name, https=https),
        path="/",
        secure=https,
        httponly=True,
        samesite="Strict",
    )


def _check_csrf(request: web.Request, auth: SubscriberAuth | OfficerAuth) -> None:
    if request.method not in SAFE_METHODS and not auth.session.csrf_ok(
        request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(Kind.CSRF_FAILED, f"missing or wrong {CSRF_HEADER} header")


async def subscriber(request: web.Request, *, during_forced_change: bool = False) -> SubscriberAuth:
    """Session first, then CSRF, then the forced password change."""
    auth = await request.app[appkeys.ACCOUNTS].authenticate(
        session_token(request, SUBSCRIBER_COOKIE)
    )
    _check_csrf(request, auth)
    if auth.account.must_change_password and not during_forced_change:
        raise ApiError(Kind.PASSWORD_CHANGE_REQUIRED, "change the password first")
    return auth


async def officer(request: web.Request, *, second_factor_pending: bool = False) -> OfficerAuth:
    """Session first (a session whose second factor is due only with
    ``second_factor_pending``), then CSRF."""
    auth = await request.app[appkeys.ACCOUNTS].authenticate_officer(
        session_token(request, OFFICER_COOKIE), second_factor_pending=second_factor_pending
    )
    _check_csrf(request, auth)
    return auth
