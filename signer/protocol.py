"""The signer's wire contract: the typed requests the gateway sends and the results it gets.

This is the narrow seam between gateway and signer. The gateway imports this module and
``signer.client``, never anything that imports ``pkcs11``. Each request kind is a frozen
``msgspec.Struct`` whose field types and constraints are the validation the signer applies to
what arrives (``signer/codec.py`` frames and decodes them; a few checks between fields are in
``check()``). The request kinds form one tagged union (the ``kind`` field), so a batch of mixed
items travels to a worker as one typed list.

The signer signs only what it builds from these typed items under its own profiles: there is no
operation that signs caller-supplied bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from signer.errors import ErrorKind, SignerError
from signer.vocabulary import REVOCATION_REASONS, RevocationReason

MAX_CMP_PART = 64 * 1024
MAX_SERIAL_DIGITS = 40  # 20 octets (RFC 5280 4.1.2.2)
CHECKPOINT_DOMAIN = b"ca-audit-checkpoint/v1\x00"  # these bytes mean nothing else anywhere
_CHECKPOINT = struct.Struct(">QQQ32s")
FINGERPRINT_SIZE = 32  # a checkpoint result: SHA-256 of the audit key's SPKI, then signature
_U63 = Annotated[int, Meta(ge=0, le=2**63 - 1)]

# the tag of every request kind, and so the operation a frame of such items names
TAG = {"tag_field": "kind", "frozen": True}


class Serial(int):
    """A certificate serial number. On the wire it is lower-case hex without leading zeros (up
    to 159 bits do not fit a msgpack integer); ``signer/codec.py`` converts both ways."""

    __slots__ = ()


def serial_from_hex(text: object) -> Serial:
    """The serial a wire string stands for; ``ValueError`` for anything but 1-40 lower-case
    hex digits without a leading zero."""
    if not isinstance(text, str):
        raise TypeError("serial must be a hex string")
    if not text or len(text) > MAX_SERIAL_DIGITS or text != text.lower() or text[0] == "0":
        raise ValueError("serial must be lower-case hex, 1-40 digits")
    return Serial(int(text, 16))


def _serial(value: int) -> Serial:
    return value if type(value) is Serial else Serial(value)


class IssueRequest(msgspec.Struct, tag="issue", forbid_unknown_fields=True, **TAG):
    """Issue one end-entity certificate.

    ``subject`` is an ordered list of (attribute OID, value) pairs, one attribute per RDN, as the
    gateway took them from the registration data (never from the CSR). ``issuer`` None means the
    active issuer of the profile. Times are Unix seconds (UTC). Any other field (a CA flag, key
    usages, extensions) is refused as ``profile_violation``: the profile decides those.
    """

    spki: bytes
    subject: tuple[tuple[str, str], ...]
    profile: str
    serial: Serial
    not_before: int
    not_after: int
    issuer: str | None = None

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "serial", _serial(self.serial))

    def check(self) -> None:
        """Nothing between fields to check: the types say it all."""


class RevokedEntry(msgspec.Struct, frozen=True):
    """One revoked certificate of a CRL; on the wire a CRL carries these as three columns."""

    serial: int
    revoked_at: int
    reason: str = "unspecified"


class CrlRequest(msgspec.Struct, frozen=True):
    """Sign a complete CRL for ``issuer`` (which may be an inactive, rotated-out issuer)."""

    issuer: str
    crl_number: int
    this_update: int
    next_update: int
    entries: tuple[RevokedEntry, ...] = ()


class CrlItem(msgspec.Struct, tag="crl", **TAG):
    """A ``CrlRequest`` as it travels: columnar, since three flat lists are far cheaper to pack
    than 100,000 small maps."""

    issuer: str
    crl_number: Annotated[int, Meta(ge=0)]
    this_update: int
    next_update: int
    serials: list[Serial]
    revoked_at: list[int]
    reasons: list[RevocationReason]

    @classmethod
    def of(cls, req: CrlRequest) -> CrlItem:
        entries = req.entries
        return cls(
            req.issuer,
            req.crl_number,
            req.this_update,
            req.next_update,
            [_serial(e.serial) for e in entries],
            [e.revoked_at for e in entries],
            [e.reason for e in entries],  # type: ignore[misc]
        )

    def check(self) -> None:
        if not (len(self.serials) == len(self.revoked_at) == len(self.reasons)):
            raise SignerError(ErrorKind.BAD_REQUEST, "CRL entry columns differ in length")
        if self.crl_number.bit_length() > 159:
            raise SignerError(ErrorKind.BAD_REQUEST, "crl_number out of range")

    def request(self) -> CrlRequest:
        entries = tuple(map(RevokedEntry, self.serials, self.revoked_at, self.reasons))
        return CrlRequest(self.issuer, self.crl_number, self.this_update, self.next_update, entries)


class OcspRequest(msgspec.Struct, tag="ocsp", **TAG):
    """Sign one OCSP response for one certificate of ``issuer``, identified by serial."""

    issuer: str
    serial: Serial
    status: Literal["good", "revoked", "unknown"]
    this_update: int
    next_update: int
    revoked_at: int | None = None
    reason: RevocationReason | None = None
    nonce: Annotated[bytes, Meta(min_length=1, max_length=128)] | None = None

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "serial", _serial(self.serial))

    def check(self) -> None:
        if self.status == "revoked" and self.revoked_at is None:
            raise SignerError(ErrorKind.BAD_REQUEST, "revoked status needs revoked_at")


class CheckpointRequest(msgspec.Struct, tag="checkpoint", forbid_unknown_fields=True, **TAG):
    """Sign a checkpoint of the audit chain's head: the last row's id and hash, the number of
    rows, and the time (Unix seconds) the head was read. Those four fields and nothing else:
    the signer builds the bytes it signs itself (``checkpoint_message``), and refuses a head
    lower than the last one it signed. The result is ``FINGERPRINT_SIZE`` bytes of key
    fingerprint followed by the signature."""

    last_id: _U63
    last_hash: Annotated[bytes, Meta(min_length=32, max_length=32)]
    count: _U63
    at: _U63

    def check(self) -> None:
        if self.count > self.last_id:
            raise SignerError(ErrorKind.BAD_REQUEST, "need 0 <= count <= last_id, at >= 0")


class CmpRequest(msgspec.Struct, tag="cmp", forbid_unknown_fields=True, **TAG):
    """The CMP protection key: without ``part``, the current CMP server certificate (DER);
    with it, the signature over ``part``, the DER ProtectedPart of a CMP *answer* the signer
    parses and checks first (``signer/cmp_protection.py``: an answer body, sent by the CMP
    certificate's subject with its key id and algorithm), so the key signs nothing else."""

    part: Annotated[bytes, Meta(min_length=1, max_length=MAX_CMP_PART)] | None = None

    def check(self) -> None:
        """The length bounds are in the type."""


# what a worker is handed: every request kind, told apart by its ``kind`` tag
WorkItem = IssueRequest | OcspRequest | CrlItem | CheckpointRequest | CmpRequest
ITEM_TYPES: dict[str, type[WorkItem]] = {
    "issue": IssueRequest,
    "ocsp": OcspRequest,
    "crl": CrlItem,
    "checkpoint": CheckpointRequest,
    "cmp": CmpRequest,
}


def checkpoint_message(req: CheckpointRequest) -> bytes:
    """The exact bytes an audit checkpoint signature covers: a domain tag, then last_id,
    count and at as unsigned 64-bit big-endian integers, then the 32-byte hash."""
    return CHECKPOINT_DOMAIN + _CHECKPOINT.pack(req.last_id, req.count, req.at, req.last_hash)


class Outcome(msgspec.Struct, omit_defaults=True):
    """One item's outcome as it travels: ``der``, or an error kind and its message."""

    der: bytes | None = None
    error: str | None = None
    message: str = ""

    @classmethod
    def failed(cls, err: SignerError) -> Outcome:
        return cls(error=err.kind.value, message=err.message)

    @classmethod
    def refused(cls, kind: ErrorKind, message: str) -> Outcome:
        return cls(error=kind.value, message=message)

    def result(self) -> Result:
        """The caller's view; an unknown kind (a newer signer) reads as ``internal``."""
        if self.error is not None:
            try:
                kind = ErrorKind(self.error)
            except ValueError:
                kind = ErrorKind.INTERNAL
            return Result(error=SignerError(kind, self.message))
        if self.der is None:
            raise SignerError(ErrorKind.BAD_REQUEST, "result has neither der nor error")
        return Result(der=self.der)


@dataclass(frozen=True, slots=True)
class Result:
    """One item's outcome: DER bytes, or an error (with whether a retry may help)."""

    der: bytes | None = None
    error: SignerError | None = None

    def unwrap(self) -> bytes:
        if self.error is not None:
            raise self.error
        assert self.der is not None
        return self.der


__all__ = [
    "CHECKPOINT_DOMAIN",
    "FINGERPRINT_SIZE",
    "ITEM_TYPES",
    "MAX_CMP_PART",
    "REVOCATION_REASONS",
    "CheckpointRequest",
    "CmpRequest",
    "CrlItem",
    "CrlRequest",
    "IssueRequest",
    "OcspRequest",
    "Outcome",
    "Result",
    "RevokedEntry",
    "Serial",
    "WorkItem",
    "checkpoint_message",
    "serial_from_hex",
]
