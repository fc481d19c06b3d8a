"""The signer's own checks of every value it will encode, made before anything is built.

The gateway checks its input too, but the signer must not rely on that: a buggy or compromised
gateway, or another portal, reaches the signer directly. Every value that goes into
cryptography's builders has passed a check here first, so building cannot raise on bad input,
and each refusal is a typed error (``bad_request`` for a value that cannot be encoded,
``profile_violation`` for one the profile forbids) that the pool counts by kind.

The bounds are those of the encodings: RFC 5280 upper bounds and string types per name
attribute, ISO 3166-1 alpha-2 country codes, X.509 times (UTCTime from 1950, GeneralizedTime to
9999) and serial numbers of at most 20 octets.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pycountry
from cryptography import x509

from signer.errors import ErrorKind, SignerError
from signer.protocol import CrlRequest, OcspRequest
from signer.vocabulary import CONTROL_CHARS

# ISO 3166-1 alpha-2, from pycountry's copy of the ISO tables (loaded once per process)
COUNTRIES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)

# X.509 string types (cryptography's defaults for these attributes, which the builder uses)
PRINTABLE = "printable"  # PrintableString
IA5 = "ia5"  # IA5String (ASCII)
UTF8 = "utf8"  # UTF8String

# Subject attributes an end-entity certificate may carry: upper length bound (RFC 5280
# Appendix A; givenName and surname are held to 64 though ub-name allows more) and string type.
SUBJECT_ATTRIBUTES: dict[str, tuple[int, str]] = {
    x509.NameOID.COUNTRY_NAME.dotted_string: (2, PRINTABLE),
    x509.NameOID.ORGANIZATION_NAME.dotted_string: (64, UTF8),
    x509.NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string: (64, UTF8),
    x509.NameOID.COMMON_NAME.dotted_string: (64, UTF8),
    x509.NameOID.SERIAL_NUMBER.dotted_string: (64, PRINTABLE),
    x509.NameOID.EMAIL_ADDRESS.dotted_string: (255, IA5),
    x509.NameOID.GIVEN_NAME.dotted_string: (64, UTF8),
    x509.NameOID.SURNAME.dotted_string: (64, UTF8),
}
MAX_SUBJECT_ATTRIBUTES = 16
_COUNTRY = x509.NameOID.COUNTRY_NAME.dotted_string

# the characters no text may hold (C0 controls, DEL), and in a certificate C1 controls and lone
# surrogates (which no UTF-8 encoder accepts) too
_CONTROL = re.compile(f"[{CONTROL_CHARS}\\x80-\\x9f\\ud800-\\udfff]")
_CHARSETS: dict[str, re.Pattern[str]] = {
    PRINTABLE: re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+"),
    IA5: re.compile("[\x20-\x7e]+"),
}

# Times as Unix seconds: not before 1950 (UTCTime's first year; a CA has no business earlier)
# and not after the last second GeneralizedTime and Python's datetime can hold.
MIN_TIME = int(datetime(1950, 1, 1, tzinfo=UTC).timestamp())
MAX_TIME = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())

# A positive INTEGER of at most 20 octets in DER (RFC 5280 4.1.2.2): 159 bits plus the sign bit
MAX_SERIAL_BITS = 159


def check_subject(pairs: tuple[tuple[str, str], ...]) -> None:
    """Refuse a subject the profile does not allow or X.509 cannot carry."""
    if not pairs:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "empty subject")
    if len(pairs) > MAX_SUBJECT_ATTRIBUTES:
        raise SignerError(ErrorKind.PROFILE_VIOLATION, "too many subject attributes")
    for oid, value in pairs:
        spec = SUBJECT_ATTRIBUTES.get(oid)
        if spec is None:
            raise SignerError(ErrorKind.PROFILE_VIOLATION, f"subject attribute {oid} not allowed")
        bound, string_type = spec
        if not value or len(value) > bound or value != value.strip():
            raise SignerError(ErrorKind.PROFILE_VIOLATION, f"subject attribute {oid} bad value")
        if _CONTROL.search(value):
            raise SignerError(ErrorKind.PROFILE_VIOLATION, "control characters in subject")
        charset = _CHARSETS.get(string_type)
        if charset is not None and not charset.fullmatch(value):
            raise SignerError(
                ErrorKind.PROFILE_VIOLATION,
                f"subject attribute {oid} has characters its string type cannot hold",
            )
        if oid == _COUNTRY and value not in COUNTRIES:
            raise SignerError(
                ErrorKind.PROFILE_VIOLATION, "country must be an ISO 3166-1 alpha-2 code"
            )


def check_time(name: str, ts: int) -> None:
    """Refuse a time X.509 (and the builders) cannot represent, or no CA should state."""
    if not MIN_TIME <= ts <= MAX_TIME:
        raise SignerError(ErrorKind.BAD_REQUEST, f"{name} must lie between 1950 and 9999")


def check_window(first: str, start: int, last: str, end: int) -> None:
    """Both times representable and the second after the first."""
    check_time(first, start)
    check_time(last, end)
    if end <= start:
        raise SignerError(ErrorKind.BAD_REQUEST, f"{last} must be after {first}")


def check_serial(serial: int, what: str = "serial") -> None:
    """A positive serial number that fits the 20 octets RFC 5280 allows."""
    if serial <= 0 or serial.bit_length() > MAX_SERIAL_BITS:
        raise SignerError(ErrorKind.BAD_REQUEST, f"{what} must be positive and at most 20 octets")


def check_ocsp(req: OcspRequest) -> None:
    """Times, serial and revocation time of one OCSP answer."""
    check_window("this_update", req.this_update, "next_update", req.next_update)
    check_serial(req.serial)
    if req.status == "revoked":
        if req.revoked_at is None:
            raise SignerError(ErrorKind.BAD_REQUEST, "revoked status needs revoked_at")
        check_time("revoked_at", req.revoked_at)


def check_crl(req: CrlRequest) -> None:
    """Times of the CRL; every entry a serial that can exist, revoked at a time X.509 can
    state, listed once."""
    check_window("this_update", req.this_update, "next_update", req.next_update)
    if not req.entries:
        return
    # whole columns at once (min/max run in C): a CRL may list 100,000 entries
    serials = [entry.serial for entry in req.entries]
    times = [entry.revoked_at for entry in req.entries]
    check_serial(min(serials), "a revoked serial")
    check_serial(max(serials), "a revoked serial")
    check_time("revoked_at", min(times))
    check_time("revoked_at", max(times))
    if len(set(serials)) != len(serials):
        raise SignerError(ErrorKind.BAD_REQUEST, "a serial is listed twice in the CRL")
