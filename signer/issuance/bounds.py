"""The time bounds the signer puts on every OCSP answer and CRL it signs, whatever the caller says.

The gateway decides statuses and validity windows, but a compromised gateway must not obtain
answers it could replay long after a revocation. So before an OCSP response or a CRL is built,
the worker checks it against ``[signer]`` limits and its own clock:

* ``nextUpdate - thisUpdate`` at most ``ocsp_max_validity_hours`` (OCSP, default 7 days) or
  ``crl_max_validity_hours`` (CRL, default 7 days): ``validity_too_long``;
* ``thisUpdate`` within ``max_clock_skew_seconds`` of the signer's clock (default 600), so
  a window cannot be moved into the future (or far into the past): ``clock_skew``;
* a revocation time (of an OCSP answer, of every CRL entry) not after the signer's clock plus
  the same skew: ``revocation_in_future``.

CRL numbers are bounded too (strictly increasing per issuer), by the daemon, which alone sees
every CRL request: ``signer/crl_numbers.py``.

Each refusal is a ``SignerError`` of its own kind, so ``ca_signer_errors_total{kind}`` shows
which bound a caller ran into.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from signer.errors import ErrorKind, SignerError

HOUR = 3600
DEFAULT_OCSP_MAX_VALIDITY_HOURS = 7 * 24
DEFAULT_CRL_MAX_VALIDITY_HOURS = 7 * 24
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Bounds:
    """The limits, in seconds."""

    ocsp_max_validity: int = DEFAULT_OCSP_MAX_VALIDITY_HOURS * HOUR
    crl_max_validity: int = DEFAULT_CRL_MAX_VALIDITY_HOURS * HOUR
    max_clock_skew: int = DEFAULT_MAX_CLOCK_SKEW_SECONDS

    def _window(
        self, what: str, this_update: int, next_update: int, longest: int, now: float
    ) -> None:
        if next_update <= this_update:
            raise SignerError(ErrorKind.BAD_REQUEST, "next_update must be after this_update")
        if next_update - this_update > longest:
            raise SignerError(
                ErrorKind.VALIDITY_TOO_LONG,
                f"{what} nextUpdate - thisUpdate is {next_update - this_update} s, "
                f"more than the {longest} s allowed",
            )
        if abs(this_update - now) > self.max_clock_skew:
            raise SignerError(
                ErrorKind.CLOCK_SKEW,
                f"{what} thisUpdate is {int(this_update - now)} s from the signer's clock "
                f"(at most {self.max_clock_skew} s allowed)",
            )

    def _revoked(self, what: str, revoked_at: int, now: float) -> None:
        if revoked_at > now + self.max_clock_skew:
            raise SignerError(
                ErrorKind.REVOCATION_IN_FUTURE,
                f"{what} revocation time is {int(revoked_at - now)} s in the future",
            )

    def check_ocsp(
        self, this_update: int, next_update: int, revoked_at: int | None, now: float
    ) -> None:
        """Refuse an OCSP answer outside the bounds (called before it is built)."""
        self._window("OCSP", this_update, next_update, self.ocsp_max_validity, now)
        if revoked_at is not None:
            self._revoked("OCSP", revoked_at, now)

    def check_crl(
        self, this_update: int, next_update: int, revoked_at: Iterable[int], now: float
    ) -> None:
        """Refuse a CRL outside the bounds (called before it is built)."""
        self._window("CRL", this_update, next_update, self.crl_max_validity, now)
        latest = max(revoked_at, default=None)
        if latest is not None:
            self._revoked("CRL entry", latest, now)
