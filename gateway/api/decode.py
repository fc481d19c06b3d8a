"""Turn request bodies, query strings and path parameters into the declared models.

The one place where untrusted request data becomes typed values: every failure is an API.md
error (413 ``too_large``, 400 ``bad_request`` for what is not a JSON object, 400 ``invalid_field``
naming the field, 404 ``not_found`` for an id or serial that cannot exist), never an exception
that reaches the client as a 500.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from aiohttp import web

from gateway.api import models
from gateway.errors import ApiError, Kind

T = TypeVar("T")
MAX_BODY = 64 * 1024  # API.md: bodies over 64 KiB answer 413 too_large
_AT = re.compile(r" - at `\$((?:\.[^`\[.]+|\[\d+\])*)`$")
_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")
_ID = re.compile(models.ID_PATTERN)
_SERIAL = re.compile(models.SERIAL_PATTERN)
_LOGIN = re.compile(models.OFFICER_LOGIN_PATTERN)


def field_of(error: msgspec.ValidationError) -> str | None:
    """The dotted name of the field a msgspec error is about (``subject.cn``), list indexes
    dropped (``usages[1]`` is ``usages``); None when the error is about the whole body."""
    text = str(error)
    at = _AT.search(text)
    parts = [p for p in re.sub(r"\[\d+\]", "", at.group(1)).split(".") if p] if at else []
    named = _NAMED.search(text)
    if named:
        parts.append(named.group(1))
    return ".".join(parts) or None


def _invalid(error: msgspec.ValidationError) -> ApiError:
    field = field_of(error)
    if field is None:
        return ApiError(Kind.BAD_REQUEST, "the body must be a JSON object")
    return ApiError(Kind.INVALID_FIELD, f"{field}: {error}", field=field)


async def body(request: web.Request, model: type[T]) -> T:
    """The request body as ``model``. The body is read whole (aiohttp's client_max_size stops
    it beyond the configured limit) and checked against the API.md limit as well."""
    raw = await request.read()  # raises 413 beyond client_max_size
    if len(raw) > MAX_BODY:
        raise ApiError(Kind.TOO_LARGE, "the request body is larger than the limit")
    if not raw.strip():
        raise ApiError(Kind.BAD_REQUEST, "a JSON object body is required")
    try:
        return msgspec.json.decode(raw, type=model)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise ApiError(Kind.BAD_REQUEST, "the body is not valid JSON") from None


def query(request: web.Request, model: type[T]) -> T:
    """The query string as ``model``: known parameters only (the first of repeated ones),
    empty values meaning the default, strings converted to the declared types."""
    names = [f.name for f in msgspec.structs.fields(model)]  # type: ignore[arg-type]
    values = {k: request.query[k] for k in names if request.query.get(k, "") != ""}
    try:
        return msgspec.convert(values, model, strict=False)
    except msgspec.ValidationError as exc:
        field = field_of(exc) or "query"
        raise ApiError(Kind.INVALID_FIELD, f"{field}: {exc}", field=field) from None


def _path(request: web.Request, name: str, pattern: re.Pattern[str], what: str) -> str:
    """A path parameter that matches ``pattern``; one that cannot name a ``what`` is as
    unknown as a missing one (404, never a 400 or a database error)."""
    raw = request.match_info[name]
    if not pattern.fullmatch(raw):
        raise ApiError(Kind.NOT_FOUND, f"no such {what}")
    return raw


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path."""
    return int(_path(request, name, _ID, "resource"))


def path_serial(request: web.Request, name: str = "serial") -> str:
    """A certificate serial (lower-case hex) from the path."""
    return _path(request, name, _SERIAL, "certificate")


def path_login(request: web.Request, name: str = "login") -> str:
    """An RA officer's login from the path."""
    return _path(request, name, _LOGIN, "officer")
