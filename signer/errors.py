"""The signer's one error vocabulary: a closed set of kinds that travels over the RPC.

The gateway maps kinds to HTTP answers at its edge; nothing else looks at message text.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed RPC frame or field
    UNKNOWN_PROFILE = "unknown_profile"
    UNKNOWN_ISSUER = "unknown_issuer"
    PROFILE_VIOLATION = "profile_violation"  # validity, CA flag, usage outside the profile
    WEAK_KEY = "weak_key"  # RSA < 2048, e != 65537, curve not P-256/P-384, other key types
    OVERLOADED = "overloaded"  # shed: cannot finish before the deadline / queue full
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the deadline passed while queued
    TOKEN_UNAVAILABLE = "token_unavailable"  # noqa: S105 -- token fault; the worker is healing
    WORKER_FAILED = "worker_failed"  # a worker process died mid-batch
    SIGNATURE_CHECK_FAILED = "signature_check_failed"  # post-sign verification failed
    NO_RESPONDER = "no_responder"  # no OCSP responder certificate of the issuer is valid now
    # bounds on what the signer signs, whatever the caller asks (signer/issuance/bounds.py,
    # signer/crl_numbers.py)
    VALIDITY_TOO_LONG = "validity_too_long"  # OCSP/CRL nextUpdate - thisUpdate over the limit
    CLOCK_SKEW = "clock_skew"  # OCSP/CRL thisUpdate too far from the signer's clock
    REVOCATION_IN_FUTURE = "revocation_in_future"  # a revocation time after the signer's clock
    CRL_NUMBER_NOT_INCREASING = "crl_number_not_increasing"  # <= the last one signed (issuer)
    UNAVAILABLE = "unavailable"  # client side: no signer could be reached
    INTERNAL = "internal"


RETRYABLE = frozenset(
    {
        ErrorKind.OVERLOADED,
        ErrorKind.DEADLINE_EXCEEDED,
        ErrorKind.TOKEN_UNAVAILABLE,
        ErrorKind.WORKER_FAILED,
        ErrorKind.SIGNATURE_CHECK_FAILED,
        ErrorKind.UNAVAILABLE,
    }
)


class SignerError(Exception):
    """Root error of the signer package and of its client library."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return f"SignerError({self.kind.value!r}, {self.message!r})"


def describe(exc: BaseException) -> str:
    """A readable one-line description; PKCS#11 exceptions often have empty messages."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
