"""The signer's one wire codec: msgpack messages with a 4-byte big-endian length in front.

Two conversations use it. Between gateway and signer (``client.py``, ``server.py``) a *frame*
names a protocol version, an id, an operation and a batch of typed items (``protocol.py``) and
is answered by a frame with one ``Outcome`` per item, in order. Between the signer's pool and
its worker processes (``pool.py``, ``worker.py``) the link messages are a tagged union on
``t``: ``Batch`` and ``Stop`` to a worker, ``Heartbeat``, ``State`` and ``Answer`` back.

All of it is ``msgspec.Struct`` types decoded in C. Validation of a request item is its type:
``decode_items`` turns each item into its request type or into the ``SignerError`` it earns,
so a hostile item fails alone while the rest of its batch is signed. Only the frame header is
checked by hand, because Python's own ``==`` and ``isinstance`` are what the contract always
meant there (``True`` is a valid frame id, ``1.0`` a valid version).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from signer.errors import ErrorKind, SignerError
from signer.protocol import ITEM_TYPES, IssueRequest, Outcome, Serial, WorkItem, serial_from_hex

VERSION = 1
MAX_FRAME = 32 * 1024 * 1024  # a 100,000-entry CRL request is about 4 MiB
HEADER = struct.Struct(">I")
MAX_DEPTH = 16  # nesting of a frame's items (list, item, subject, pair: typed items need 4)
PRIORITIES: tuple[str, ...] = ("interactive", "bulk")
Priority = Literal["interactive", "bulk"]


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Serial):
        return format(obj, "x")
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Serial:
        return serial_from_hex(obj)
    raise NotImplementedError(f"cannot decode {typ!r}")


ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_ANY = msgspec.msgpack.Decoder()


def encode(msg: Any) -> bytes:
    """``msg`` as msgpack, the way every message of the signer's wire is encoded."""
    return ENCODER.encode(msg)


def wire_form(msg: Any) -> Any:
    """What ``msg`` is on the wire, as plain maps, lists and scalars (serials as hex)."""
    return _ANY.decode(ENCODER.encode(msg))


def framed(msg: Any) -> bytes:
    """``msg`` encoded, behind its length: the bytes one write puts on a socket."""
    buf = bytearray(HEADER.size)
    ENCODER.encode_into(msg, buf, HEADER.size)
    HEADER.pack_into(buf, 0, len(buf) - HEADER.size)
    return bytes(buf)


async def read_payload(reader: asyncio.StreamReader) -> bytes:
    """The next length-prefixed payload; ``IncompleteReadError`` at the end of the stream."""
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return await reader.readexactly(length)


# -- frames between gateway and signer -----------------------------------------------------------
class _FrameIn(msgspec.Struct):
    """A frame as it arrives. Items stay undecoded until the operation says what they are."""

    v: int | float | bool
    id: int | bool
    op: str = ""
    items: list[msgspec.Raw] = []
    deadline: int | float | bool | None = None
    priority: Priority = "interactive"
    results: list[Outcome] | None = None
    error: Outcome | None = None
    body: dict[str, Any] | None = None


class _FrameOut(msgspec.Struct, omit_defaults=True):
    v: int
    id: int
    op: str = ""
    items: list[Any] | None = None
    deadline: float | None = None
    priority: str = "interactive"
    results: list[Any] | None = None
    error: Outcome | None = None
    body: dict[str, Any] | None = None


_FRAME = msgspec.msgpack.Decoder(_FrameIn)
_ITEMS = {op: msgspec.msgpack.Decoder(t, dec_hook=_dec_hook) for op, t in ITEM_TYPES.items()}
_ISSUE_FIELDS = frozenset({*IssueRequest.__struct_fields__, "kind"})


@dataclass(slots=True)
class Frame:
    """A request or a response on the wire.

    Decoded, a request's ``items`` are its typed requests, each item that failed its type
    standing as the ``SignerError`` it gets for an answer.
    """

    id: int
    op: str = ""
    items: list[Any] = field(default_factory=list)
    deadline: float | None = None  # absolute Unix time; None means no deadline
    # "bulk" work (OCSP pre-signing, ...) waits while any interactive item is queued
    priority: str = "interactive"
    results: list[Any] | None = None
    error: Outcome | None = None  # whole-request failure (version, overload, ...)
    body: dict[str, Any] | None = None  # health answers

    def encode(self) -> bytes:
        out = _FrameOut(VERSION, self.id, results=self.results, error=self.error, body=self.body)
        if self.op:
            out.op, out.items, out.deadline = self.op, self.items, self.deadline
            out.priority = self.priority
        return framed(out)

    @classmethod
    def decode(cls, payload: bytes) -> Frame:
        """The frame in ``payload``; ``SignerError(bad_request)`` for anything the whole frame
        is refused for (not a msgpack map, wrong version or header field, items nested past
        ``MAX_DEPTH``)."""
        try:
            f = _FRAME.decode(payload)
        except msgspec.ValidationError as exc:
            raise SignerError(ErrorKind.BAD_REQUEST, f"bad frame: {exc}") from None
        except (msgspec.DecodeError, RecursionError):
            raise SignerError(ErrorKind.BAD_REQUEST, "frame is not msgpack") from None
        if f.v != VERSION:
            raise SignerError(ErrorKind.BAD_REQUEST, f"unsupported protocol version {f.v!r}")
        return cls(
            id=f.id,
            op=f.op,
            items=decode_items(f.op, f.items),
            deadline=float(f.deadline) if f.deadline is not None else None,
            priority=f.priority,
            results=f.results,
            error=f.error,
            body=f.body,
        )


def decode_items(op: str, raw: list[msgspec.Raw]) -> list[Any]:
    """Each item as the request type of ``op`` (or the ``SignerError`` it is refused with).

    Items of an operation without items (``health``) or of an unknown one are decoded as they
    are. A typed item nests at most four levels (items list, item, subject, pair), so only an
    item that fails its type can be deep; if any goes past ``MAX_DEPTH`` the whole frame is
    refused, since the batch that would carry it to a worker could not be decoded there.
    """
    decoder = _ITEMS.get(op)
    if decoder is None:
        items = [_generic(r) for r in raw]
        if not nested_at_most(items, MAX_DEPTH):
            raise SignerError(ErrorKind.BAD_REQUEST, "items are nested too deeply")
        return items
    out: list[Any] = []
    for r in raw:
        try:
            item = decoder.decode(r)
            item.check()
            out.append(item)
        except msgspec.ValidationError as exc:
            out.append(_refusal(op, r, exc))
        except SignerError as exc:
            out.append(exc)
    return out


def decode_item(op: str, data: bytes | msgspec.Raw) -> WorkItem:
    """One item of ``op``, or raises the ``SignerError`` it is refused with."""
    (item,) = decode_items(op, [msgspec.Raw(data) if isinstance(data, bytes) else data])
    if isinstance(item, SignerError):
        raise item
    return item


def _generic(raw: msgspec.Raw) -> Any:
    try:
        return _ANY.decode(raw)
    except RecursionError:
        raise SignerError(ErrorKind.BAD_REQUEST, "items are nested too deeply") from None


def _refusal(op: str, raw: msgspec.Raw, exc: msgspec.ValidationError) -> SignerError:
    """Why an item failed its type: an issue item's own extensions, CA flag or usages are a
    profile violation (the profile decides them); anything else is a bad request."""
    value = _generic(raw)
    if not nested_at_most([value], MAX_DEPTH):
        raise SignerError(ErrorKind.BAD_REQUEST, "items are nested too deeply")
    if op == "issue":
        if not isinstance(value, dict):
            return SignerError(ErrorKind.BAD_REQUEST, "issue item must be a map")
        extra = sorted(map(str, set(value) - _ISSUE_FIELDS))
        if extra:
            return SignerError(
                ErrorKind.PROFILE_VIOLATION,
                f"field(s) {', '.join(extra)} not allowed: the profile decides",
            )
    return SignerError(ErrorKind.BAD_REQUEST, f"bad {op} item: {exc}")


_CONTAINERS = frozenset({list, tuple, dict})


def nested_at_most(value: list[Any], limit: int) -> bool:
    """Whether lists and maps inside ``value`` (itself depth 1) go no deeper than ``limit``.

    A container of scalars is passed over in C (``map(type, ...)``), so a 100,000-entry CRL
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


# -- the link between the pool and a worker process ----------------------------------------------
class Batch(msgspec.Struct, tag="batch", tag_field="t"):
    """Items for a worker; it answers with one ``Answer`` of the same id."""

    id: int
    items: list[WorkItem]


class Stop(msgspec.Struct, tag="stop", tag_field="t"):
    """The pool is closing: finish and exit."""


class Heartbeat(msgspec.Struct, tag="hb", tag_field="t"):
    """The worker lives; ``busy``: seconds its current batch has run (0 when idle)."""

    busy: float = 0.0


class State(msgspec.Struct, tag="state", tag_field="t"):
    """``starting``, ``ready``, ``healing`` or ``failed`` (with why)."""

    state: str
    detail: str = ""
    pid: int = 0


class Answer(msgspec.Struct, tag="result", tag_field="t"):
    """A batch's outcomes, in order; ``durations``: seconds per signed item; key signatures
    made since the last answer, by role (``ca``, ``ocsp``)."""

    id: int
    results: list[Outcome]
    durations: list[float] = []
    token_fault: bool = False
    key_signatures: dict[str, int] = {}


ToWorker = Batch | Stop
FromWorker = Heartbeat | State | Answer
TO_WORKER = msgspec.msgpack.Decoder(ToWorker, dec_hook=_dec_hook)
FROM_WORKER = msgspec.msgpack.Decoder(FromWorker)
