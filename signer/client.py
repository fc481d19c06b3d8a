"""The gateway's client for one or more signer daemons.

Concurrent ``issue()`` calls are coalesced into one RPC (bounded by ``batch_max`` items and
``batch_wait`` seconds), batches are spread round-robin over the signers that answer, and a batch
whose signer is down (or answers with a retryable error) is tried on the next one. This module
imports nothing that touches PKCS#11, so the gateway can use it freely.

A retry after a lost connection may mean the first signer signed too; the certificate has the
serial the gateway chose and recorded, and only the answer the gateway receives is stored and
released, so no unknown certificate reaches anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from signer.codec import MAX_FRAME, Frame, read_payload
from signer.errors import ErrorKind, SignerError
from signer.protocol import (
    CheckpointRequest,
    CmpRequest,
    CrlItem,
    CrlRequest,
    IssueRequest,
    OcspRequest,
    Result,
)

log = logging.getLogger("signer.client")


@dataclass(frozen=True)
class Address:
    scheme: str  # "unix" or "tls"
    target: str  # path, or host:port

    @classmethod
    def parse(cls, text: str) -> Address:
        if text.startswith("unix:"):
            return cls("unix", text[5:])
        if text.startswith("tls://"):
            return cls("tls", text[6:])
        raise ValueError(f"signer address must be unix:PATH or tls://HOST:PORT, got {text!r}")

    def __str__(self) -> str:
        return f"unix:{self.target}" if self.scheme == "unix" else f"tls://{self.target}"


@contextlib.contextmanager
def _key_path(key_pem: str) -> Iterator[str]:
    """A path ``ssl`` can read the key from that exists only in memory (a memfd), so a key
    that came from an environment variable never lands on disk."""
    fd = os.memfd_create("signer-tls-key", os.MFD_CLOEXEC)
    try:
        os.write(fd, key_pem.encode("ascii") + b"\n")
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ClientTls:
    """The gateway's TLS settings for ``tls://`` signers: its certificate, its key (a secret,
    read from ``*_file`` or ``*_env`` like the others) and the CA that issued the signers'
    server certificates."""

    cert: Path
    key_pem: str
    ca: Path

    def __repr__(self) -> str:  # never print the key
        return f"ClientTls(cert={str(self.cert)!r}, ca={str(self.ca)!r}, key=***)"

    def context(self) -> ssl.SSLContext:
        """TLS 1.2 or later; the signer's certificate must chain to ``ca`` and name the host
        of the ``tls://`` address (DNS name or IP address in its subjectAltName)."""
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            with _key_path(self.key_pem) as key_path:
                ctx.load_cert_chain(str(self.cert), key_path)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"signer TLS certificate, key or CA unusable: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED  # the defaults, spelled out: they are the point
        ctx.check_hostname = True
        return ctx


class _Link:
    """One physical connection: its streams, the requests waiting on it, its reader task.

    Everything that belongs to one connection lives here, so that the end of one connection
    (its reader sees EOF) fails exactly the requests sent on it and never touches the one
    that replaced it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def usable(self) -> bool:
        return not self.closed and not self.writer.is_closing()

    def close(self, why: str) -> None:
        """Close the streams and fail what waits on them with the retryable ``unavailable``."""
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(SignerError(ErrorKind.UNAVAILABLE, why))


class Connection:
    """One multiplexed connection to one signer: many requests in flight, matched by id.

    The connection is opened on first use and re-opened after it drops. A request sent on a
    link that has gone (or goes while it waits) ends with the retryable ``unavailable``, so
    the client tries the next signer; nothing in here raises anything but ``SignerError``.
    """

    def __init__(self, address: Address, ssl_context: ssl.SSLContext | None) -> None:
        self.address = address
        self.ssl_context = ssl_context
        self._link: _Link | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.down_until = 0.0

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.usable

    async def _connect(self, wait_s: float) -> _Link:
        if self.scheme_unix:
            coro = asyncio.open_unix_connection(self.address.target, limit=MAX_FRAME)
        else:
            host, _, port = self.address.target.rpartition(":")
            coro = asyncio.open_connection(host, int(port), ssl=self.ssl_context, limit=MAX_FRAME)
        reader, writer = await asyncio.wait_for(coro, wait_s)
        link = _Link(reader, writer)
        link.task = asyncio.create_task(self._read_loop(link))
        self._link = link
        return link

    @property
    def scheme_unix(self) -> bool:
        return self.address.scheme == "unix"

    async def _usable_link(self, wait_s: float) -> _Link:
        """The open link, or a new one; one caller connects while the others wait for it."""
        async with self._lock:
            link = self._link
            if link is not None and link.usable:
                return link
            try:
                return await self._connect(wait_s)
            except (OSError, TimeoutError) as exc:
                self.down_until = time.monotonic() + 1.0
                raise SignerError(
                    ErrorKind.UNAVAILABLE, f"cannot reach signer {self.address}: {exc}"
                ) from None

    async def _read_loop(self, link: _Link) -> None:
        try:
            while True:
                frame = Frame.decode(await read_payload(link.reader))
                fut = link.pending.pop(frame.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, SignerError):
            pass
        finally:
            link.close(f"connection to {self.address} lost")
            if self._link is link:
                self._link = None

    async def call(self, frame: Frame, wait_s: float) -> Frame:
        link = await self._usable_link(wait_s)
        frame.id = next(self._ids)
        try:
            data = frame.encode()
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:  # a field
            raise SignerError(ErrorKind.BAD_REQUEST, f"request cannot be encoded: {exc}") from None
        if not link.usable:
            # the link went between connecting and sending: the next signer (or a fresh
            # connection on the next call) may serve, so this is retryable
            self.down_until = time.monotonic() + 1.0
            raise SignerError(ErrorKind.UNAVAILABLE, f"connection to {self.address} lost")
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        link.pending[frame.id] = fut
        try:
            link.writer.write(data)
        except (OSError, RuntimeError) as exc:  # uvloop raises RuntimeError on a closed handle
            link.close(f"connection to {self.address} lost: {exc}")
            self.down_until = time.monotonic() + 1.0
            raise SignerError(ErrorKind.UNAVAILABLE, f"cannot write to {self.address}") from None
        try:
            return await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            link.pending.pop(frame.id, None)
            raise SignerError(
                ErrorKind.UNAVAILABLE, f"signer {self.address} did not answer in {wait_s}s"
            ) from None
        except SignerError:
            self.down_until = time.monotonic() + 1.0
            raise

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        link.close("client closed")
        if link.task is not None:
            link.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link.task


class SignerOps(Protocol):
    """What the gateway uses of a signer: ``SignerClient`` is it, and the gateway's services
    are typed against this (a test may hand them anything that answers the same)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def health(self) -> dict[str, Any]: ...
    async def issue(self, request: IssueRequest, deadline: float | None = None) -> bytes: ...
    async def issue_many(
        self, requests: list[IssueRequest], deadline: float | None = None
    ) -> list[Result]: ...
    async def sign_crl(self, request: CrlRequest, deadline: float | None = None) -> bytes: ...
    async def sign_ocsp(
        self, requests: list[OcspRequest], deadline: float | None = None, *, bulk: bool = False
    ) -> list[Result]: ...
    async def cmp(self, request: CmpRequest, deadline: float | None = None) -> bytes: ...
    async def sign_checkpoint(
        self, request: CheckpointRequest, deadline: float | None = None
    ) -> bytes: ...


class SignerClient:
    def __init__(
        self,
        addresses: list[str],
        *,
        batch_max: int = 128,
        batch_wait: float = 0.001,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("at least one signer address is required")
        parsed = [Address.parse(a) for a in addresses]
        if ssl_context is None and any(a.scheme == "tls" for a in parsed):
            # without a context asyncio would speak plain TCP to a tls:// address
            raise ValueError("tls:// signer addresses need an ssl_context (mutual TLS)")
        self.connections = [Connection(a, ssl_context) for a in parsed]
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.timeout = timeout
        self._rr = itertools.count()
        self._pending: list[tuple[IssueRequest, float | None, asyncio.Future[bytes]]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Nothing to do eagerly: connections open on first use and re-open after faults."""

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        for conn in self.connections:
            await conn.close()

    # -- routing ---------------------------------------------------------------------------
    def _order(self) -> list[Connection]:
        """Connections to try, healthy ones first, starting at the next in round-robin order."""
        n = len(self.connections)
        start = next(self._rr) % n
        ring = [self.connections[(start + i) % n] for i in range(n)]
        now = time.monotonic()
        return [c for c in ring if c.down_until <= now] + [c for c in ring if c.down_until > now]

    async def _call(
        self, op: str, items: list[Any], deadline: float | None, *, bulk: bool = False
    ) -> list[Result]:
        """Send a batch; items with retryable failures are tried on the other signers."""
        results: list[Result | None] = [None] * len(items)
        todo = list(range(len(items)))
        last_error = SignerError(ErrorKind.UNAVAILABLE, "no signer configured")
        for conn in self._order():
            if not todo:
                break
            frame = Frame(
                id=0,
                op=op,
                items=[items[i] for i in todo],
                deadline=deadline,
                priority="bulk" if bulk else "interactive",
            )
            try:
                answer = await conn.call(frame, self._timeout(deadline))
            except SignerError as exc:
                last_error = exc
                continue
            try:
                if answer.error is not None:
                    last_error = answer.error.result().error or last_error
                    if not last_error.retryable:
                        break
                    continue
                if not isinstance(answer.results, list):
                    raise TypeError("results is not a list")
                got = [r.result() for r in answer.results]
            except (SignerError, TypeError, ValueError):
                # a signer that answers what it should not is unusable: try the next one
                last_error = SignerError(
                    ErrorKind.UNAVAILABLE, f"signer {conn.address} sent a malformed answer"
                )
                continue
            if len(got) != len(todo):
                last_error = SignerError(
                    ErrorKind.UNAVAILABLE, f"signer {conn.address} answered the wrong count"
                )
                continue
            still = []
            for i, res in zip(todo, got, strict=True):
                results[i] = res
                if res.error is not None and res.error.retryable:
                    still.append(i)
            todo = still
        for i in todo:
            if results[i] is None:
                results[i] = Result(error=last_error)
        return [r for r in results if r is not None]

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        return max(0.05, min(self.timeout, deadline - time.time()))

    # -- operations ------------------------------------------------------------------------
    async def issue(self, request: IssueRequest, deadline: float | None = None) -> bytes:
        """Issue one certificate; concurrent calls share one RPC. Raises ``SignerError``."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append((request, deadline, fut))
        if len(self._pending) >= self.batch_max:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.batch_wait, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._send_issue_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_issue_batch(
        self, batch: list[tuple[IssueRequest, float | None, asyncio.Future[bytes]]]
    ) -> None:
        deadlines = [d for _, d, _ in batch if d is not None]
        deadline = min(deadlines) if len(deadlines) == len(batch) else None
        try:
            results = await self._call("issue", [r for r, _, _ in batch], deadline)
        except Exception as exc:  # never leave a caller waiting, and never with a bare error:
            # callers handle SignerError (the gateway marks the pending row failed and answers
            # 503); anything else would be a 500 that leaves the row pending
            if not isinstance(exc, SignerError):
                log.exception("signer client failed")
                exc = SignerError(ErrorKind.UNAVAILABLE, f"signer client error: {exc!r}")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, _, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if res.error is not None:
                fut.set_exception(res.error)
            else:
                fut.set_result(res.der or b"")

    async def issue_many(
        self, requests: list[IssueRequest], deadline: float | None = None
    ) -> list[Result]:
        """Issue a batch the caller has already gathered, as one RPC."""
        return await self._call("issue", list(requests), deadline)

    async def sign_crl(self, request: CrlRequest, deadline: float | None = None) -> bytes:
        (result,) = await self._call("crl", [CrlItem.of(request)], deadline)
        return result.unwrap()

    async def sign_ocsp(
        self, requests: list[OcspRequest], deadline: float | None = None, *, bulk: bool = False
    ) -> list[Result]:
        """``bulk`` marks background work (pre-signing): the signer serves it only while no
        interactive request waits, in small batches, so it never delays an applicant."""
        return await self._call("ocsp", list(requests), deadline, bulk=bulk)

    async def cmp(self, request: CmpRequest, deadline: float | None = None) -> bytes:
        """The CMP server certificate (no ``part``) or the CMP key's signature over an
        answer's ProtectedPart (``signer/cmp_protection.py`` checks what it signs)."""
        (result,) = await self._call("cmp", [request], deadline)
        return result.unwrap()

    async def sign_checkpoint(
        self, request: CheckpointRequest, deadline: float | None = None
    ) -> bytes:
        """A signed audit checkpoint: key fingerprint (32 bytes) followed by the signature."""
        (result,) = await self._call("checkpoint", [request], deadline)
        return result.unwrap()

    async def health(self) -> dict[str, Any]:
        """The first answering signer's health; raises ``SignerError`` when none answers."""
        last = SignerError(ErrorKind.UNAVAILABLE, "no signer answered")
        for conn in self._order():
            try:
                frame = await conn.call(Frame(id=0, op="health"), min(self.timeout, 3.0))
            except SignerError as exc:
                last = exc
                continue
            body = frame.body or {}
            body["address"] = str(conn.address)
            if body.get("status") in ("ok", "degraded"):
                return body
            last = SignerError(ErrorKind.TOKEN_UNAVAILABLE, f"signer {conn.address} is down")
        raise last
