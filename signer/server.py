"""The signer's RPC server: length-prefixed msgpack frames on a Unix socket (or mutual TLS).

Each connection may have many requests in flight; answers carry the request id and may come
back in any order. The server only frames, admits and answers: all signing happens in the
worker pool.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from typing import Any

from signer.config import SignerConfig
from signer.errors import ErrorKind, SignerError
from signer.metrics import SignerMetrics
from signer.peers import PeerPolicy, bind_unix_socket, peer_of
from signer.pool import WorkerPool
from signer.protocol import HEADER, MAX_FRAME, VERSION, Frame, error_dict

log = logging.getLogger("signer.server")

MAX_ITEMS = 8192  # per request; larger jobs are split by the client


class SignerServer:
    def __init__(self, scfg: SignerConfig, pool: WorkerPool, metrics: SignerMetrics) -> None:
        self.scfg = scfg
        self.pool = pool
        self.metrics = metrics
        self.servers: list[asyncio.AbstractServer] = []
        self.peers = PeerPolicy.build(scfg.allowed_uids, scfg.allowed_gids)
        self._refused_logged: set[int] = set()  # pids already logged: one line per peer

    async def start(self) -> None:
        if self.scfg.socket is not None:
            path = self.scfg.socket
            sock = bind_unix_socket(path, mode=self.scfg.socket_mode, gid=self.scfg.socket_gid)
            server = await asyncio.start_unix_server(self._unix_connection, sock=sock)
            self.servers.append(server)
            log.info("listening on unix:%s (mode %04o)", path, self.scfg.socket_mode)
        if self.scfg.tcp:
            host, _, port = self.scfg.tcp.rpartition(":")
            server = await asyncio.start_server(
                self._connection, host or "127.0.0.1", int(port), ssl=self._tls_context()
            )
            self.servers.append(server)
            log.info("listening on tcp:%s with mutual TLS", self.scfg.tcp)

    def _tls_context(self) -> ssl.SSLContext:
        assert self.scfg.tls_cert and self.scfg.tls_key and self.scfg.tls_client_ca
        ctx = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(self.scfg.tls_client_ca)
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(str(self.scfg.tls_cert), str(self.scfg.tls_key))
        return ctx

    async def stop(self) -> None:
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
                    writer.write(Frame(id=0, error=error_dict(err)).encode())
                    break
                payload = await reader.readexactly(length)
                try:
                    frame = Frame.decode(payload)
                except SignerError as exc:
                    writer.write(Frame(id=0, error=error_dict(exc)).encode())
                    continue
                if frame.op == "health":
                    writer.write(Frame(id=frame.id, body=self.health()).encode())
                    continue
                if frame.op not in ("issue", "crl", "ocsp") or len(frame.items) > MAX_ITEMS:
                    err = SignerError(ErrorKind.BAD_REQUEST, f"bad operation {frame.op!r}")
                    writer.write(Frame(id=frame.id, error=error_dict(err)).encode())
                    continue
                task = asyncio.create_task(self._answer(frame, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.metrics.connections.dec()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def _answer(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        t0 = time.perf_counter()
        results = await self.pool.submit(
            frame.op, frame.items, frame.deadline, bulk=frame.priority == "bulk"
        )
        if writer.is_closing():
            return
        writer.write(Frame(id=frame.id, results=results).encode())
        self.metrics.request_seconds.labels(operation=frame.op).observe(time.perf_counter() - t0)
