"""The signer's wire contract: typed requests and results, and their framing.

This is the narrow seam between gateway and signer. The gateway imports this module and
``signer.client``, never anything that imports ``pkcs11``. Frames are a 4-byte big-endian length
followed by a msgpack map; every request names a protocol version, an operation and a batch of
typed items, and gets one result per item in the same order.

The signer signs only what it builds from these typed items under its own profiles: there is no
operation that signs caller-supplied bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from signer.errors import ErrorKind, SignerError

VERSION = 1
MAX_FRAME = 32 * 1024 * 1024  # a 100,000-entry CRL request is about 4 MiB
HEADER = struct.Struct(">I")
MAX_DEPTH = 16  # nesting of a frame's items (list, item, subject, pair: typed items need 4)

Op = Literal["issue", "crl", "ocsp", "checkpoint", "cmp", "health"]
OPS: tuple[str, ...] = ("issue", "crl", "ocsp", "checkpoint", "cmp", "health")
PRIORITIES: tuple[str, ...] = ("interactive", "bulk")

REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "removeFromCRL",
    "privilegeWithdrawn",
    "aACompromise",
)


def _need(d: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    try:
        value = d[key]
    except (KeyError, TypeError) as exc:
        raise SignerError(ErrorKind.BAD_REQUEST, f"missing field {key!r}") from exc
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise SignerError(ErrorKind.BAD_REQUEST, f"field {key!r} has the wrong type")
    return value


def _opt(d: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, typ):
        raise SignerError(ErrorKind.BAD_REQUEST, f"field {key!r} has the wrong type")
    return value


def serial_to_hex(serial: int) -> str:
    return format(serial, "x")


def serial_from_hex(text: str) -> int:
    if not text or len(text) > 40 or text != text.lower() or text.startswith("0"):
        raise SignerError(ErrorKind.BAD_REQUEST, "serial must be lower-case hex, 1-40 digits")
    try:
        return int(text, 16)
    except ValueError as exc:
        raise SignerError(ErrorKind.BAD_REQUEST, "serial is not hex") from exc


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """Issue one end-entity certificate.

    ``subject`` is an ordered list of (attribute OID, value) pairs, one attribute per RDN, as the
    gateway took them from the registration data (never from the CSR). ``issuer`` None means the
    active issuer of the profile. Times are Unix seconds (UTC).
    """

    spki: bytes
    subject: tuple[tuple[str, str], ...]
    profile: str
    serial: int
    not_before: int
    not_after: int
    issuer: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "spki": self.spki,
            "subject": [list(p) for p in self.subject],
            "profile": self.profile,
            "serial": serial_to_hex(self.serial),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "issuer": self.issuer,
        }

    FIELDS = frozenset(
        {"spki", "subject", "profile", "serial", "not_before", "not_after", "issuer"}
    )

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> IssueRequest:
        if not isinstance(d, dict):
            raise SignerError(ErrorKind.BAD_REQUEST, "issue item must be a map")
        extra = sorted(set(d) - cls.FIELDS)
        if extra:
            # CA flag, key usages, extensions, ...: a certificate's powers come from its profile
            raise SignerError(
                ErrorKind.PROFILE_VIOLATION,
                f"field(s) {', '.join(map(str, extra))} not allowed: the profile decides",
            )
        subject = _need(d, "subject", list)
        pairs: list[tuple[str, str]] = []
        for pair in subject:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(x, str) for x in pair)
            ):
                raise SignerError(ErrorKind.BAD_REQUEST, "subject must be [oid, value] pairs")
            pairs.append((pair[0], pair[1]))
        return cls(
            spki=_need(d, "spki", bytes),
            subject=tuple(pairs),
            profile=_need(d, "profile", str),
            serial=serial_from_hex(_need(d, "serial", str)),
            not_before=_need(d, "not_before", int),
            not_after=_need(d, "not_after", int),
            issuer=_opt(d, "issuer", str),
        )


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    serial: int
    revoked_at: int
    reason: str = "unspecified"


@dataclass(frozen=True, slots=True)
class CrlRequest:
    """Sign a complete CRL for ``issuer`` (which may be an inactive, rotated-out issuer)."""

    issuer: str
    crl_number: int
    this_update: int
    next_update: int
    entries: tuple[RevokedEntry, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "crl_number": self.crl_number,
            "this_update": self.this_update,
            "next_update": self.next_update,
            # columnar: three flat lists are far cheaper to pack than 100,000 small maps
            "serials": [serial_to_hex(e.serial) for e in self.entries],
            "revoked_at": [e.revoked_at for e in self.entries],
            "reasons": [e.reason for e in self.entries],
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CrlRequest:
        serials = _need(d, "serials", list)
        times = _need(d, "revoked_at", list)
        reasons = _need(d, "reasons", list)
        if not (len(serials) == len(times) == len(reasons)):
            raise SignerError(ErrorKind.BAD_REQUEST, "CRL entry columns differ in length")
        entries = []
        for s, t, r in zip(serials, times, reasons, strict=True):
            if not isinstance(s, str) or not isinstance(t, int) or r not in REVOCATION_REASONS:
                raise SignerError(ErrorKind.BAD_REQUEST, "bad CRL entry")
            entries.append(RevokedEntry(serial_from_hex(s), t, r))
        number = _need(d, "crl_number", int)
        if number < 0 or number.bit_length() > 159:
            raise SignerError(ErrorKind.BAD_REQUEST, "crl_number out of range")
        return cls(
            issuer=_need(d, "issuer", str),
            crl_number=number,
            this_update=_need(d, "this_update", int),
            next_update=_need(d, "next_update", int),
            entries=tuple(entries),
        )


OcspStatus = Literal["good", "revoked", "unknown"]


@dataclass(frozen=True, slots=True)
class OcspRequest:
    """Sign one OCSP response for one certificate of ``issuer``, identified by serial."""

    issuer: str
    serial: int
    status: str
    this_update: int
    next_update: int
    revoked_at: int | None = None
    reason: str | None = None
    nonce: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "serial": serial_to_hex(self.serial),
            "status": self.status,
            "this_update": self.this_update,
            "next_update": self.next_update,
            "revoked_at": self.revoked_at,
            "reason": self.reason,
            "nonce": self.nonce,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> OcspRequest:
        status = _need(d, "status", str)
        if status not in ("good", "revoked", "unknown"):
            raise SignerError(ErrorKind.BAD_REQUEST, "status must be good, revoked or unknown")
        reason = _opt(d, "reason", str)
        if reason is not None and reason not in REVOCATION_REASONS:
            raise SignerError(ErrorKind.BAD_REQUEST, "unknown revocation reason")
        revoked_at = _opt(d, "revoked_at", int)
        if status == "revoked" and revoked_at is None:
            raise SignerError(ErrorKind.BAD_REQUEST, "revoked status needs revoked_at")
        nonce = _opt(d, "nonce", bytes)
        if nonce is not None and not 1 <= len(nonce) <= 128:
            raise SignerError(ErrorKind.BAD_REQUEST, "nonce must be 1-128 bytes")
        return cls(
            issuer=_need(d, "issuer", str),
            serial=serial_from_hex(_need(d, "serial", str)),
            status=status,
            this_update=_need(d, "this_update", int),
            next_update=_need(d, "next_update", int),
            revoked_at=revoked_at,
            reason=reason,
            nonce=nonce,
        )


CHECKPOINT_DOMAIN = b"ca-audit-checkpoint/v1\x00"  # these bytes mean nothing else anywhere
CHECKPOINT_FIELDS = frozenset({"last_id", "last_hash", "count", "at"})
_CHECKPOINT = struct.Struct(">QQQ32s")
FINGERPRINT_SIZE = 32  # a checkpoint result: SHA-256 of the audit key's SPKI, then signature


@dataclass(frozen=True, slots=True)
class CheckpointRequest:
    """Sign a checkpoint of the audit chain's head: the last row's id and hash, the number of
    rows, and the time (Unix seconds) the head was read. Those four fields and nothing else:
    the signer builds the bytes it signs itself (``checkpoint_message``), and refuses a head
    lower than the last one it signed. The result is ``FINGERPRINT_SIZE`` bytes of key
    fingerprint followed by the signature."""

    last_id: int
    last_hash: bytes
    count: int
    at: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "last_id": self.last_id,
            "last_hash": self.last_hash,
            "count": self.count,
            "at": self.at,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CheckpointRequest:
        if not isinstance(d, dict):
            raise SignerError(ErrorKind.BAD_REQUEST, "checkpoint item must be a map")
        extra = sorted(map(str, set(d) - CHECKPOINT_FIELDS))
        if extra:
            raise SignerError(ErrorKind.BAD_REQUEST, f"field(s) {', '.join(extra)} not allowed")
        req = cls(
            last_id=_need(d, "last_id", int),
            last_hash=_need(d, "last_hash", bytes),
            count=_need(d, "count", int),
            at=_need(d, "at", int),
        )
        if len(req.last_hash) != 32:
            raise SignerError(ErrorKind.BAD_REQUEST, "last_hash must be 32 bytes (SHA-256)")
        if not (0 <= req.count <= req.last_id < 2**63 and 0 <= req.at < 2**63):
            raise SignerError(ErrorKind.BAD_REQUEST, "need 0 <= count <= last_id, at >= 0")
        return req


MAX_CMP_PART = 64 * 1024


@dataclass(frozen=True, slots=True)
class CmpRequest:
    """The CMP protection key: without ``part``, the current CMP server certificate (DER);
    with it, the signature over ``part``, the DER ProtectedPart of a CMP *answer* the signer
    parses and checks first (``signer/cmp_protection.py``: an answer body, sent by the CMP
    certificate's subject with its key id and algorithm), so the key signs nothing else."""

    part: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"part": self.part}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CmpRequest:
        if not isinstance(d, dict):
            raise SignerError(ErrorKind.BAD_REQUEST, "cmp item must be a map")
        extra = sorted(map(str, set(d) - {"part"}))
        if extra:
            raise SignerError(ErrorKind.BAD_REQUEST, f"field(s) {', '.join(extra)} not allowed")
        part = _opt(d, "part", bytes)
        if part is not None and not 0 < len(part) <= MAX_CMP_PART:
            raise SignerError(ErrorKind.BAD_REQUEST, "part must be 1 byte to 64 KiB")
        return cls(part=part)


def checkpoint_message(req: CheckpointRequest) -> bytes:
    """The exact bytes an audit checkpoint signature covers: a domain tag, then last_id,
    count and at as unsigned 64-bit big-endian integers, then the 32-byte hash."""
    return CHECKPOINT_DOMAIN + _CHECKPOINT.pack(req.last_id, req.count, req.at, req.last_hash)


@dataclass(frozen=True, slots=True)
class Result:
    """One item's outcome: DER bytes, or an error kind (with whether a retry may help)."""

    der: bytes | None = None
    error: SignerError | None = None

    def to_wire(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error.kind.value, "message": self.error.message}
        return {"der": self.der}

    @classmethod
    def from_wire(cls, d: Any) -> Result:
        if not isinstance(d, dict):
            raise SignerError(ErrorKind.BAD_REQUEST, "result must be a map")
        if "error" in d:
            try:
                kind = ErrorKind(d["error"])
            except ValueError:
                kind = ErrorKind.INTERNAL
            return cls(error=SignerError(kind, str(d.get("message", ""))))
        der = d.get("der")
        if not isinstance(der, bytes):
            raise SignerError(ErrorKind.BAD_REQUEST, "result has neither der nor error")
        return cls(der=der)

    def unwrap(self) -> bytes:
        if self.error is not None:
            raise self.error
        assert self.der is not None
        return self.der


@dataclass(slots=True)
class Frame:
    """A request or a response on the wire."""

    id: int
    op: str = ""
    items: list[Any] = field(default_factory=list)
    deadline: float | None = None  # absolute Unix time; None means no deadline
    # "bulk" work (OCSP pre-signing, ...) waits while any interactive item is queued
    priority: str = "interactive"
    results: list[Any] | None = None
    error: dict[str, Any] | None = None  # whole-request failure (version, overload, ...)
    body: dict[str, Any] | None = None  # health answers

    def encode(self) -> bytes:
        d: dict[str, Any] = {"v": VERSION, "id": self.id}
        if self.op:
            d["op"] = self.op
            d["items"] = self.items
            if self.deadline is not None:
                d["deadline"] = self.deadline
            if self.priority != "interactive":
                d["priority"] = self.priority
        if self.results is not None:
            d["results"] = self.results
        if self.error is not None:
            d["error"] = self.error
        if self.body is not None:
            d["body"] = self.body
        payload = msgpack.packb(d, use_bin_type=True)
        return HEADER.pack(len(payload)) + payload

    @classmethod
    def decode(cls, payload: bytes) -> Frame:
        try:
            d = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise SignerError(ErrorKind.BAD_REQUEST, "frame is not msgpack") from exc
        if not isinstance(d, dict):
            raise SignerError(ErrorKind.BAD_REQUEST, "frame must be a map")
        if d.get("v") != VERSION:
            raise SignerError(ErrorKind.BAD_REQUEST, f"unsupported protocol version {d.get('v')!r}")
        ident = d.get("id")
        if not isinstance(ident, int):
            raise SignerError(ErrorKind.BAD_REQUEST, "frame id must be an integer")
        deadline = d.get("deadline")
        if deadline is not None and not isinstance(deadline, int | float):
            raise SignerError(ErrorKind.BAD_REQUEST, "deadline must be a number")
        items = d.get("items", [])
        if not isinstance(items, list):
            raise SignerError(ErrorKind.BAD_REQUEST, "items must be a list")
        if not nested_at_most(items, MAX_DEPTH):
            raise SignerError(ErrorKind.BAD_REQUEST, "items are nested too deeply")
        priority = d.get("priority", "interactive")
        if priority not in PRIORITIES:
            raise SignerError(ErrorKind.BAD_REQUEST, f"unknown priority {priority!r}")
        return cls(
            id=ident,
            op=str(d.get("op", "")),
            items=items,
            deadline=float(deadline) if deadline is not None else None,
            priority=priority,
            results=d.get("results"),
            error=d.get("error"),
            body=d.get("body"),
        )


_CONTAINERS = frozenset({list, tuple, dict})


def nested_at_most(value: list[Any], limit: int) -> bool:
    """Whether lists and maps inside ``value`` (itself depth 1) go no deeper than ``limit``.

    msgpack decodes at most 1024 levels: a frame at that limit decodes here, but the batch that
    carries its items to a worker is a level deeper and does not decode there, which left the
    batch unanswered. Typed items need four levels; anything past ``MAX_DEPTH`` is refused
    at the door. A
    container of scalars is passed over in C (``map(type, ...)``), so a 100,000-entry CRL
    costs a few milliseconds.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        children = node.values() if type(node) is dict else node
        if _CONTAINERS.isdisjoint(map(type, children)):
            continue
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return True


def error_dict(err: SignerError) -> dict[str, Any]:
    return {"error": err.kind.value, "message": err.message}
