"""The gateway's one error vocabulary: a closed set of kinds, mapped to HTTP in one place."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    BAD_REQUEST = "bad_request"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_CAPTCHA = "invalid_captcha"
    CAPTCHA_DISABLED = "captcha_disabled"
    ACCOUNT_LOCKED = "account_locked"
    CSRF_FAILED = "csrf_failed"
    PASSWORD_CHANGE_REQUIRED = "password_change_required"  # noqa: S105 - an error code
    PASSWORD_POLICY = "password_policy"  # noqa: S105 - an error code
    DUPLICATE = "duplicate"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_READY = "not_ready"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL = "internal"
    # abuse resistance (docs/API-extensions.md)
    RATE_LIMITED = "rate_limited"  # 429 + Retry-After: over a configured limit, not evaluated
    BUSY = "busy"  # 503 + Retry-After: the password hashing queue is full
    FORBIDDEN = "forbidden"  # 403: the officer lacks the right (e.g. to unlock officers)
    # certificate lifecycle
    BAD_CSR = "bad_csr"
    WEAK_KEY = "weak_key"
    POP_FAILED = "pop_failed"
    TERMS_NOT_ACCEPTED = "terms_not_accepted"
    USAGE_NOT_ALLOWED = "usage_not_allowed"
    ALREADY_HAS_VALID = "already_has_valid"
    SIGNER_UNAVAILABLE = "signer_unavailable"
    NOT_RENEWABLE = "not_renewable"
    BAD_CHALLENGE = "bad_challenge"
    KEY_REUSE = "key_reuse"
    ALREADY_REVOKED = "already_revoked"
    # portal
    SPEECH_UNAVAILABLE = "speech_unavailable"  # the audio captcha cannot be spoken
    # RA officers' second factor (docs/API-extensions.md)
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    SECOND_FACTOR_FAILED = "second_factor_failed"
    SECOND_FACTOR_NOT_DUE = "second_factor_not_due"
    FACTOR_REJECTED = "factor_rejected"
    NOT_ENROLLED = "not_enrolled"


HTTP_STATUS: dict[Kind, int] = {
    Kind.BAD_REQUEST: 400,
    Kind.INVALID_FIELD: 400,
    Kind.INVALID_CAPTCHA: 400,
    Kind.PASSWORD_POLICY: 400,
    Kind.UNAUTHENTICATED: 401,
    Kind.INVALID_CREDENTIALS: 401,
    Kind.CSRF_FAILED: 403,
    Kind.PASSWORD_CHANGE_REQUIRED: 403,
    Kind.NOT_FOUND: 404,
    Kind.CAPTCHA_DISABLED: 404,
    Kind.METHOD_NOT_ALLOWED: 405,
    Kind.DUPLICATE: 409,
    Kind.TOO_LARGE: 413,
    Kind.UNSUPPORTED_MEDIA_TYPE: 415,
    Kind.ACCOUNT_LOCKED: 423,
    Kind.INTERNAL: 500,
    Kind.NOT_READY: 503,
    Kind.DATABASE_UNAVAILABLE: 503,
    Kind.BAD_CSR: 400,
    Kind.WEAK_KEY: 400,
    Kind.POP_FAILED: 400,
    Kind.TERMS_NOT_ACCEPTED: 400,
    Kind.BAD_CHALLENGE: 400,
    Kind.KEY_REUSE: 400,
    Kind.USAGE_NOT_ALLOWED: 403,
    Kind.ALREADY_HAS_VALID: 409,
    Kind.NOT_RENEWABLE: 409,
    Kind.ALREADY_REVOKED: 409,
    Kind.SIGNER_UNAVAILABLE: 503,
    Kind.SPEECH_UNAVAILABLE: 503,
    Kind.SECOND_FACTOR_REQUIRED: 403,
    Kind.SECOND_FACTOR_FAILED: 401,
    Kind.SECOND_FACTOR_NOT_DUE: 409,
    Kind.FACTOR_REJECTED: 400,
    Kind.NOT_ENROLLED: 409,
    Kind.RATE_LIMITED: 429,
    Kind.BUSY: 503,
    Kind.FORBIDDEN: 403,
}
assert set(HTTP_STATUS) == set(Kind)


class ApiError(Exception):
    """Raised anywhere in the gateway; the error middleware turns it into the JSON answer."""

    def __init__(
        self, kind: Kind, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.kind = Kind(kind)
        self.message = message
        self.headers = headers  # e.g. Retry-After with signer_unavailable
        self.extra = extra

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.kind]

    def body(self) -> dict[str, Any]:
        return {"error": self.kind.value, "message": self.message, **self.extra}

    def __repr__(self) -> str:
        return f"ApiError({self.kind.value!r}, {self.message!r})"


# aiohttp's own HTTP exceptions (routing, body size) map onto the same vocabulary
FROM_HTTP_STATUS: dict[int, Kind] = {
    400: Kind.BAD_REQUEST,
    404: Kind.NOT_FOUND,
    405: Kind.METHOD_NOT_ALLOWED,
    413: Kind.TOO_LARGE,
    415: Kind.UNSUPPORTED_MEDIA_TYPE,
}
