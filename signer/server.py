"""The signer's RPC server: length-prefixed msgpack frames on a Unix socket (or mutual TLS
over TCP, serving only the client certificates pinned in ``tls_allowed_clients``).

Each connection may have many requests in flight; answers carry the request id and may come
back in any order. The server only frames, admits and answers: all signing happens in the
worker pool.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from config.loader import ConfigError
from signer.checkpoints import CheckpointLedger, SignedCheckpoint
from signer.codec import HEADER, MAX_FRAME, VERSION, Frame
from signer.config import SignerConfig
from signer.crl_numbers import CrlNumbers
from signer.errors import ErrorKind, SignerError
from signer.metrics import SignerMetrics
from signer.peers import PeerPolicy, bind_unix_socket, peer_of
from signer.pool import WorkerPool
from signer.protocol import CheckpointRequest, CrlItem, Outcome
from signer.tls import fingerprint, server_context

log = logging.getLogger("signer.server")

MAX_ITEMS = 8192  # per request; larger jobs are split by the client
HANDSHAKE_SECONDS = 10.0  # a TCP peer that does not finish the TLS handshake is dropped


def _subject(der: bytes | None) -> str:
    """The client certificate's subject for the log (the handshake parsed it; cryptography
    is stricter, so a certificate it rejects is named as such rather than crashing)."""
    if not der:
        return "-"
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return "(unparsable certificate)"


class SignerServer:
    def __init__(self, scfg: SignerConfig, pool: WorkerPool, metrics: SignerMetrics) -> None:
        self.scfg = scfg
        self.pool = pool
        self.metrics = metrics
        self.servers: list[asyncio.AbstractServer] = []
        self._tls: ssl.SSLContext | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tcp_connections: set[asyncio.Task[None]] = set()
        self.peers = PeerPolicy.build(scfg.allowed_uids, scfg.allowed_gids)
        self._refused_logged: set[int] = set()  # pids already logged: one line per peer
        try:  # a damaged ledger stops the start: it must not silently begin afresh
            self.ledger = (
                CheckpointLedger(scfg.audit_checkpoint_file) if scfg.audit_checkpoint_file else None
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[signer] audit_checkpoint_file: {exc}") from exc
        self._checkpoint_lock = asyncio.Lock()
        try:  # likewise a damaged record of CRL numbers
            self.crl_numbers = CrlNumbers(scfg.state_dir)
        except ValueError as exc:
            raise ConfigError(f"[signer] state_dir: {exc}") from exc
        self._online = frozenset(i.name for i in scfg.online_issuers)

    async def start(self) -> None:
        if self.scfg.socket is not None:
            path = self.scfg.socket
            sock = bind_unix_socket(path, mode=self.scfg.socket_mode, gid=self.scfg.socket_gid)
            server = await asyncio.start_unix_server(self._unix_connection, sock=sock)
            self.servers.append(server)
            log.info("listening on unix:%s (mode %04o)", path, self.scfg.socket_mode)
        if self.scfg.tcp:
            assert self.scfg.tls_cert and self.scfg.tls_key and self.scfg.tls_client_ca
            self._tls = server_context(
                self.scfg.tls_cert, self.scfg.tls_key, self.scfg.tls_client_ca
            )
            host, _, port = self.scfg.tcp.rpartition(":")
            listener = socket.create_server((host or "127.0.0.1", int(port)), backlog=128)
            listener.setblocking(False)
            self._listener = listener
            self._accepting = asyncio.create_task(self._accept_loop(listener))
            log.info("listening on tcp:%s with mutual TLS", self.scfg.tcp)

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept TCP connections and hand each to ``_tls_accept``. Done by hand rather than
        with ``start_server(ssl=...)`` so that refused handshakes reach our log and metrics
        (asyncio and uvloop swallow them); ``StreamWriter.start_tls`` after a plain accept
        races with the first bytes under uvloop."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(listener)
            except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
                log.warning("accept on tcp:%s failed: %s", self.scfg.tcp, exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._tls_accept(conn, peer))
            self._tcp_connections.add(task)
            task.add_done_callback(self._tcp_connections.discard)

    async def _tls_accept(self, conn: socket.socket, peer: object) -> None:
        """Handshake (client certificate required, chaining to ``tls_client_ca``), then the
        pin, then the same frame loop as on the Unix socket."""
        pins = self.scfg.tls_allowed_clients
        assert self._tls is not None and pins is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            transport, protocol = await loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader),
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=HANDSHAKE_SECONDS,
            )
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as exc:
            conn.close()
            self._refused("handshake", "TLS handshake with %s failed: %r", peer, exc)
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der or not pins.admits(der):
            writer.close()
            self._refused(
                "not_allowed",
                "refused TLS client %s: %s (%s) is not in tls_allowed_clients",
                peer,
                _subject(der),
                fingerprint(der) if der else "-",
            )
            return
        await self._connection(reader, writer)

    def _refused(self, reason: str, msg: str, *args: object) -> None:
        log.warning(msg, *args)
        self.metrics.tls_refused.labels(reason=reason).inc()

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()
        if self.scfg.socket is not None:
            Path(self.scfg.socket).unlink(missing_ok=True)  # noqa: ASYNC240 -- instant, local

    def health(self) -> dict[str, Any]:
        body = self.pool.health()
        body.update(
            version=VERSION,
            active_issuer=self.scfg.active_issuer.name,
            issuers=sorted(self.scfg.issuers),
            profiles=sorted(self.scfg.profiles),
        )
        return body

    async def _unix_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Check the peer's kernel credentials before reading a byte from it."""
        peer = peer_of(writer.get_extra_info("socket"))
        if not self.peers.allows(peer):
            self.metrics.refused_peers.inc()
            if peer.pid not in self._refused_logged:
                if len(self._refused_logged) > 1024:
                    self._refused_logged.clear()
                self._refused_logged.add(peer.pid)
                log.warning(
                    "refused a connection on the Unix socket from pid %d uid %d gid %d "
                    "(not in [signer] allowed_uids / allowed_gids)",
                    peer.pid,
                    peer.uid,
                    peer.gid,
                )
            writer.close()
            return
        await self._connection(reader, writer)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.metrics.connections.inc()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                (length,) = HEADER.unpack(header)
                if length > MAX_FRAME:
                    err = SignerError(ErrorKind.BAD_REQUEST, "frame too large")
                    writer.write(Frame(id=0, error=Outcome.failed(err)).encode())
                    break
                payload = await reader.readexactly(length)
                try:
                    frame = Frame.decode(payload)
                except SignerError as exc:
                    writer.write(Frame(id=0, error=Outcome.failed(exc)).encode())
                    continue
                if frame.op == "health":
                    writer.write(Frame(id=frame.id, body=self.health()).encode())
                    continue
                if frame.op == "checkpoint":
                    task = asyncio.create_task(self._checkpoint(frame, writer))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    continue
                if frame.op not in ("issue", "crl", "ocsp", "cmp") or len(frame.items) > MAX_ITEMS:
                    err = SignerError(ErrorKind.BAD_REQUEST, f"bad operation {frame.op!r}")
                    writer.write(Frame(id=frame.id, error=Outcome.failed(err)).encode())
                    continue
                answer = self._crl if frame.op == "crl" else self._answer
                task = asyncio.create_task(answer(frame, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.metrics.connections.dec()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def _checkpoint(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        """One audit checkpoint per request, one at a time: admitted against the last one
        signed, signed by a worker, written to the ledger file, then answered."""
        t0 = time.perf_counter()
        async with self._checkpoint_lock:
            try:
                if len(frame.items) != 1:
                    raise SignerError(ErrorKind.BAD_REQUEST, "one checkpoint per request")
                if self.ledger is None:
                    raise SignerError(ErrorKind.UNKNOWN_ISSUER, "no audit checkpoint file")
                req = frame.items[0]
                if isinstance(req, SignerError):
                    raise req
                assert isinstance(req, CheckpointRequest)
                self.ledger.admit(req)
                (result,) = await self.pool.submit("checkpoint", [req], frame.deadline)
                if result.der is not None:
                    self.ledger.append(SignedCheckpoint.from_result(req, result.der))
                    log.info("audit checkpoint signed: id %d, count %d", req.last_id, req.count)
            except SignerError as exc:
                self.metrics.errors.labels(kind=exc.kind.value).inc()
                log.warning("audit checkpoint refused: %s", exc.message)
                result = Outcome.failed(exc)
        if not writer.is_closing():
            writer.write(Frame(id=frame.id, results=[result]).encode())
        self.metrics.request_seconds.labels(operation="checkpoint").observe(
            time.perf_counter() - t0
        )

    async def _crl(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        """CRLs: each number is reserved against the last one signed for its issuer (the
        daemon's record, ``signer/crl_numbers.py``) before a worker signs it; an equal or
        lower one is refused. Issuers the signer has no key of are left to the worker."""
        t0 = time.perf_counter()
        results: list[Any] = [None] * len(frame.items)
        admitted: list[int] = []
        for i, req in enumerate(frame.items):
            try:
                if isinstance(req, SignerError):
                    raise req
                assert isinstance(req, CrlItem)
                if req.issuer in self._online:
                    await asyncio.to_thread(self.crl_numbers.reserve, req.issuer, req.crl_number)
            except SignerError as exc:
                self.metrics.errors.labels(kind=exc.kind.value).inc()
                log.warning("CRL refused: %s", exc.message)
                results[i] = Outcome.failed(exc)
                continue
            admitted.append(i)
        if admitted:
            signed = await self.pool.submit(
                "crl",
                [frame.items[i] for i in admitted],
                frame.deadline,
                bulk=frame.priority == "bulk",
            )
            for i, result in zip(admitted, signed, strict=True):
                results[i] = result
        if writer.is_closing():
            return
        writer.write(Frame(id=frame.id, results=results).encode())
        self.metrics.request_seconds.labels(operation="crl").observe(time.perf_counter() - t0)

    async def _answer(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        """Items that failed their type are answered here; the others go to the pool."""
        t0 = time.perf_counter()
        items, bulk = frame.items, frame.priority == "bulk"
        admitted = [i for i, item in enumerate(items) if not isinstance(item, SignerError)]
        if len(admitted) == len(items):
            results = await self.pool.submit(frame.op, items, frame.deadline, bulk=bulk)
        else:
            results = [None] * len(items)
            for i, item in enumerate(items):
                if isinstance(item, SignerError):
                    self.metrics.errors.labels(kind=item.kind.value).inc()
                    results[i] = Outcome.failed(item)
            signed = await self.pool.submit(
                frame.op, [items[i] for i in admitted], frame.deadline, bulk=bulk
            )
            for i, result in zip(admitted, signed, strict=True):
                results[i] = result
        if writer.is_closing():
            return
        writer.write(Frame(id=frame.id, results=results).encode())
        self.metrics.request_seconds.labels(operation=frame.op).observe(time.perf_counter() - t0)
