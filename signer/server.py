"""The signer's RPC server: length-prefixed msgpack frames on a Unix socket (or mutual TLS).

Each connection may have many requests in flight; answers carry the request id and may come
back in any order. The server only frames, admits and answers: all signing happens in the
worker pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

from hsm_config.config import ConfigError
from signer.checkpoints import CheckpointLedger, SignedCheckpoint
from signer.config import SignerConfig
from signer.errors import ErrorKind, SignerError
from signer.metrics import SignerMetrics
from signer.pool import WorkerPool
from signer.protocol import HEADER, MAX_FRAME, VERSION, CheckpointRequest, Frame, error_dict

log = logging.getLogger("signer.server")

MAX_ITEMS = 8192  # per request; larger jobs are split by the client


class SignerServer:
    def __init__(self, scfg: SignerConfig, pool: WorkerPool, metrics: SignerMetrics) -> None:
        self.scfg = scfg
        self.pool = pool
        self.metrics = metrics
        self.servers: list[asyncio.AbstractServer] = []
        try:  # a damaged ledger stops the start: it must not silently begin afresh
            self.ledger = (
                CheckpointLedger(scfg.audit_checkpoint_file) if scfg.audit_checkpoint_file else None
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[signer] audit_checkpoint_file: {exc}") from exc
        self._checkpoint_lock = asyncio.Lock()

    async def start(self) -> None:
        if self.scfg.socket is not None:
            path = self.scfg.socket
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_socket():
                path.unlink()
            server = await asyncio.start_unix_server(self._connection, path=str(path))
            os.chmod(path, 0o660)  # only the service user (and its group) may ask for signatures
            self.servers.append(server)
            log.info("listening on unix:%s", path)
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
                if frame.op == "checkpoint":
                    task = asyncio.create_task(self._checkpoint(frame, writer))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
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
                req = CheckpointRequest.from_wire(frame.items[0])
                self.ledger.admit(req)
                (result,) = await self.pool.submit("checkpoint", [req.to_wire()], frame.deadline)
                if "der" in result:
                    self.ledger.append(SignedCheckpoint.from_result(req, result["der"]))
                    log.info("audit checkpoint signed: id %d, count %d", req.last_id, req.count)
            except SignerError as exc:
                self.metrics.errors.labels(kind=exc.kind.value).inc()
                log.warning("audit checkpoint refused: %s", exc.message)
                result = error_dict(exc)
        if not writer.is_closing():
            writer.write(Frame(id=frame.id, results=[result]).encode())
        self.metrics.request_seconds.labels(operation="checkpoint").observe(
            time.perf_counter() - t0
        )

    async def _answer(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        t0 = time.perf_counter()
        results = await self.pool.submit(
            frame.op, frame.items, frame.deadline, bulk=frame.priority == "bulk"
        )
        if writer.is_closing():
            return
        writer.write(Frame(id=frame.id, results=results).encode())
        self.metrics.request_seconds.labels(operation=frame.op).observe(time.perf_counter() - t0)
