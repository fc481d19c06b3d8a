"""The signer's error kinds as HTTP answers: one table, applied once, at the web edge.

Services let ``SignerError`` rise (after recording what they must, e.g. a failed pending row);
the error middleware answers it through ``to_api_error``. Transient kinds (the signer cannot be
reached, is overloaded, ran out of time, lost a worker or its token) invite a retry: 503
``signer_unavailable`` with Retry-After. Permanent ones never do: a weak key is the applicant's
400; a request the signer refuses as malformed or outside its profiles is the gateway's own
fault, a 500 ``internal`` without Retry-After, since retrying would only repeat it.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.errors import ApiError, Kind
from signer.errors import ErrorKind, SignerError

RETRY_AFTER_SECONDS = 10


class Answer(NamedTuple):
    kind: Kind
    retry: bool  # send Retry-After
    message: str


_BUSY = "the signing service is unavailable; try again later"
_REFUSED = "the signing service refused the request"

SIGNER_ERRORS: dict[ErrorKind, Answer] = {
    ErrorKind.UNAVAILABLE: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.OVERLOADED: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.DEADLINE_EXCEEDED: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.WORKER_FAILED: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.TOKEN_UNAVAILABLE: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.SIGNATURE_CHECK_FAILED: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    # no valid OCSP responder certificate right now: the signer renews it (OCSP: tryLater)
    ErrorKind.NO_RESPONDER: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.WEAK_KEY: Answer(Kind.WEAK_KEY, False, "the signer refused this key"),
    ErrorKind.BAD_REQUEST: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.PROFILE_VIOLATION: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.UNKNOWN_PROFILE: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.UNKNOWN_ISSUER: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.INTERNAL: Answer(Kind.INTERNAL, False, "the signing service failed"),
    # the signer's bounds on CRLs and OCSP answers: the gateway asked for something it must
    # not (or its clock or CRL numbers are off); retrying would repeat it
    ErrorKind.NO_RESPONDER: Answer(Kind.SIGNER_UNAVAILABLE, True, _BUSY),
    ErrorKind.VALIDITY_TOO_LONG: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.CLOCK_SKEW: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.REVOCATION_IN_FUTURE: Answer(Kind.INTERNAL, False, _REFUSED),
    ErrorKind.CRL_NUMBER_NOT_INCREASING: Answer(Kind.INTERNAL, False, _REFUSED),
}
# a kind added to the signer later and not yet mapped: an error, never an invitation to retry
UNMAPPED = Answer(Kind.INTERNAL, False, "the signing service failed")


def retry_headers() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


def to_api_error(exc: SignerError) -> ApiError:
    """The API answer for a signer failure (its message text stays in the logs)."""
    answer = SIGNER_ERRORS.get(exc.kind, UNMAPPED)
    return ApiError(answer.kind, answer.message, headers=retry_headers() if answer.retry else None)
