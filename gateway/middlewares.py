"""Request ids, structured access logs, metrics, security headers and JSON error bodies."""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import appkeys, dbfaults
from gateway.errors import FROM_HTTP_STATUS, HTTP_STATUS, ApiError, Kind
from gateway.signer_errors import to_api_error
from signer.errors import SignerError

access_log = logging.getLogger("gateway.access")
log = logging.getLogger("gateway.errors")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def request_log_fields() -> dict[str, object]:
    """What every log line made while a request is served carries (config/logs.py): its id."""
    rid = request_id_var.get()
    return {"request_id": rid} if rid else {}


_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _INCOMING_ID.match(incoming) else secrets.token_hex(8)
    request[appkeys.REQUEST_ID] = rid
    token = request_id_var.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
    except web.HTTPException as exc:  # redirects; errors are answered by `errors`
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        metrics = request.app[appkeys.METRICS]
        metrics.request_counter(route, request.method, status).inc()
        metrics.latency_histogram(route).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):  # skip building the record below info
            access_log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "route": route,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote": request.remote,
                },
            )
        request_id_var.reset(token)


HSTS = "max-age=63072000; includeSubDomains"  # two years; no preload (a registry decision)


async def strict_transport_security(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` of an HTTPS gateway: every answer carries HSTS, including
    redirects, errors, static files and the operator sub-app, so a browser that once reached
    the portal never again sends its session cookie or password over plain HTTP."""
    response.headers.setdefault("Strict-Transport-Security", HSTS)


def error_response(
    kind: Kind,
    message: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> web.Response:
    body = {"error": kind.value, "message": message, **extra}
    return web.Response(
        body=orjson.dumps(body),
        status=status or HTTP_STATUS[kind],
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.kind is Kind.INTERNAL:
            log.error("internal error: %s", exc.message)
        return error_response(exc.kind, exc.message, headers=exc.headers, **exc.extra)
    except SignerError as exc:  # the one mapping of signer kinds to HTTP
        api = to_api_error(exc)
        log.warning("signer error on %s %s: %s", request.method, request.path, exc.kind.value)
        return error_response(api.kind, api.message, headers=api.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = FROM_HTTP_STATUS.get(exc.status)
        if kind is None:
            kind = Kind.INTERNAL if exc.status >= 500 else Kind.BAD_REQUEST
        headers = {}
        if "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        messages = {
            Kind.NOT_FOUND: "no such resource",
            Kind.METHOD_NOT_ALLOWED: f"{request.method} is not allowed here",
            Kind.TOO_LARGE: "the request body is larger than the limit",
        }
        return error_response(
            kind, messages.get(kind, exc.reason), status=exc.status, headers=headers
        )
    except Exception as exc:
        if (outage := database_outage(exc, request)) is not None:
            return outage
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(Kind.INTERNAL, "internal error")


def database_outage(exc: Exception, request: web.Request) -> web.Response | None:
    """503 ``database_unavailable`` + Retry-After when ``exc`` means the database is away
    (stopped, restarting, read-only, out of connections): the client retries, the log gets
    one warning per outage instead of a traceback per request. None for anything else."""
    reason = dbfaults.outage_reason(exc)
    if reason is None:
        return None
    dbfaults.outages.record(reason, f"{request.method} {request.path}")
    return error_response(
        Kind.DATABASE_UNAVAILABLE,
        "the database is unavailable; try again shortly",
        headers={"Retry-After": str(dbfaults.RETRY_AFTER_SECONDS)},
    )
