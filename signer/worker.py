"""A signing worker: one process, one PKCS#11 context, one logged-in session.

python-pkcs11 initialises the module without ``CKF_OS_LOCKING_OK``, so SoftHSM is not safe to
share between threads; a process per worker gives real parallelism on the token instead. The
worker receives batches over a socket from the pool, runs each item through the issuance
pipeline and returns one result per item. On a token fault it answers what it holds with a
retryable error, then heals: re-initialise the module, log in again, find the keys, cross-check
them against the issuer certificates and make a test signature before it reports ready again.
While healing it keeps answering (with ``token_unavailable``) so nobody waits on it.

A heartbeat thread tells the pool every ``[signer] heartbeat_timeout`` / 4 seconds that the
process lives and how long its current batch has run (``busy``): a frozen process sends
nothing, a process stuck in C_Sign (python-pkcs11 releases the GIL there) sends a growing
``busy``; either way the pool sees the stall within seconds and moves the items elsewhere.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from config.loader import ConfigError, load
from config.logs import configure_logging
from config.token import token_config
from signer.checkpoints import AuditSigner
from signer.cmp_protection import CmpSigner, CmpSlot
from signer.codec import HEADER, TO_WORKER, Answer, Batch, Heartbeat, State, Stop, framed
from signer.config import SignerConfig, load_signer_config
from signer.errors import ErrorKind, SignerError
from signer.hsm.errors import TokenFault, describe, token_fault
from signer.hsm.token import TokenHandle
from signer.issuance import build
from signer.issuance.keys import PublicKey, RecordingKey
from signer.issuance.registry import find_key, key_signatures, open_registry, prove_key
from signer.protocol import (
    CheckpointRequest,
    CmpRequest,
    CrlItem,
    IssueRequest,
    OcspRequest,
    Outcome,
    WorkItem,
)
from signer.role_keys import load_public_key

log = logging.getLogger("signer.worker")


class Link:
    """The worker's end of its socket to the pool: length-prefixed msgpack messages, blocking.

    The pool reads the other end on its event loop. Reads take exactly one message and nothing
    more, so ``poll()`` can ask the socket whether the next one has begun to arrive.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()  # the heartbeat thread sends too

    def send(self, msg: Heartbeat | State | Answer) -> None:
        data = framed(msg)
        with self._send_lock:
            self.sock.sendall(data)

    def poll(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout)[0])

    def recv(self) -> Batch | Stop:
        """The next message; ``EOFError`` when the pool has gone."""
        (length,) = HEADER.unpack(self._exactly(HEADER.size))
        return TO_WORKER.decode(self._exactly(length))

    def _exactly(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            chunk = self.sock.recv_into(view[got:], n - got)
            if chunk == 0:
                raise EOFError("the pool closed the link")
            got += chunk
        return buf


def _recorded_key(
    handle: TokenHandle, name: str, label: str, path: Path | None
) -> tuple[RecordingKey, PublicKey] | None:
    """A role key (signer/role_keys.py) found on the token and matched against the public
    key its ceremony recorded; None when none was recorded (its operation is then refused)."""
    if path is None or not path.exists():
        return None
    public = load_public_key(path)
    token_public = find_key(handle, name, label)
    if token_public != public:
        raise ConfigError(f"{path} does not match token key {label!r}")
    return handle.signing_key(label, token_public), public


def open_audit_key(handle: TokenHandle, scfg: SignerConfig) -> AuditSigner | None:
    """The audit checkpoint key, proved against its recorded public key with a test
    checkpoint; None when no audit key was recorded (checkpoints are then refused)."""
    found = _recorded_key(handle, "audit", scfg.audit_key_label, scfg.audit_public_key)
    if found is None:
        return None
    signer = AuditSigner(*found)
    signer.sign(CheckpointRequest(0, bytes(32), 0, 0))  # a test signature, verified
    return signer


def open_cmp_key(
    handle: TokenHandle, scfg: SignerConfig, registry: build.Registry
) -> CmpSigner | None:
    """The CMP protection key, proved against its recorded public key with a test signature,
    its certificate from the active issuer; None when no CMP key was recorded (signed CMP
    answers are then refused)."""
    found = _recorded_key(handle, "cmp", scfg.cmp_key_label, scfg.cmp_public_key)
    if found is None:
        return None
    key, public = found
    prove_key(key, public, "cmp")
    issuer = registry.issuers[scfg.active_issuer.name]
    slot = CmpSlot(
        issuer, key, scfg.state_dir, scfg.ocsp_responder_validity_days, scfg.cmp_key_label
    )
    slot.refresh(registry.clock())
    return CmpSigner(slot)


class Worker:
    def __init__(self, link: Link, scfg: SignerConfig, handle: TokenHandle) -> None:
        self.link = link
        self.scfg = scfg
        self.handle = handle
        self.registry: build.Registry | None = None
        self.audit: AuditSigner | None = None
        self.cmp: CmpSigner | None = None
        self._reported: dict[str, int] = {}  # key signatures already sent to the pool
        self.busy_since: float | None = None  # monotonic start of the batch being worked on

    def heartbeat(self, interval: float) -> None:
        """Body of the heartbeat thread: a ``Heartbeat`` with the seconds the current batch
        has run, until the link closes."""
        while True:
            started = self.busy_since
            busy = 0.0 if started is None else time.monotonic() - started
            try:
                self.send(Heartbeat(round(busy, 3)))
            except OSError:
                return
            time.sleep(interval)

    def send(self, msg: Heartbeat | State | Answer) -> None:
        self.link.send(msg)

    def state(self, state: str, detail: str = "") -> None:
        self.send(State(state, detail, os.getpid()))

    # -- healing ---------------------------------------------------------------------------
    def connect(self, first: bool) -> None:
        """Open the token and the registry, retrying with backoff; answer batches meanwhile."""
        delay = 0.1
        while True:
            try:
                if first:
                    self.handle.open()
                else:
                    self.handle.reopen(attempts=1)
                self.registry = open_registry(self.handle, self.scfg)
                self.audit = open_audit_key(self.handle, self.scfg)
                self.cmp = open_cmp_key(self.handle, self.scfg, self.registry)
                self._reported = {}  # fresh key objects count from zero
                self.state("ready")
                return
            except ConfigError as exc:
                self.state("failed", str(exc))
                log.error("worker cannot serve: %s", exc)
                sys.exit(3)
            except Exception as exc:
                first = False
                if token_fault(exc, "opening the token") is None:
                    log.exception("unexpected error while opening the token")
                self.state("healing", describe(exc))
                log.warning("token unavailable, retrying in %.1fs: %s", delay, describe(exc))
                self.registry = None
                self.drain(delay)
                delay = min(delay * 2, 5.0)

    def fail_batch(self, msg: Batch, kind: ErrorKind, message: str) -> None:
        """Answer every item of a batch with one error (the pool ignores a second answer)."""
        self.send(Answer(msg.id, [Outcome.refused(kind, message)] * len(msg.items)))

    def drain(self, seconds: float) -> None:
        """Wait up to ``seconds``, failing any batch that arrives meanwhile as retryable."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.link.poll(left):
                msg = self.link.recv()
                if isinstance(msg, Batch):
                    self.fail_batch(msg, ErrorKind.TOKEN_UNAVAILABLE, "token healing")

    # -- work ------------------------------------------------------------------------------
    def run_batch(self, msg: Batch) -> bool:
        """Process one batch; returns False when a token fault means the session is gone."""
        assert self.registry is not None
        items = msg.items
        results: list[Outcome | None] = [None] * len(items)
        t0 = time.perf_counter()
        self.busy_since = time.monotonic()
        fault: TokenFault | None = None
        try:
            # a responder certificate close to its end is renewed before the batch's answers
            self.registry.responders.refresh(self.registry.clock())
            self._staged_items(items, results)
            for i, item in enumerate(items):
                if results[i] is None:
                    results[i] = self._one(item)
        except Exception as exc:
            fault = token_fault(exc, "token fault")
            if fault is None:
                raise
        if fault is not None:
            failed = Outcome.failed(fault)
            # what was signed and verified before the fault stands; the rest may be retried
            results = [failed if r is None else r for r in results]
        self.busy_since = None
        done = sum(1 for r in results if r is not None and r.der is not None)
        per_item = (time.perf_counter() - t0) / max(1, len(items))
        answer = Answer(
            msg.id,
            results,  # type: ignore[arg-type]
            [per_item] * done,
            fault is not None,
            self._key_signatures_since_last(),
        )
        self.send(answer)
        return fault is None

    def _key_signatures_since_last(self) -> dict[str, int]:
        assert self.registry is not None
        now = key_signatures(self.registry)
        delta = {role: n - self._reported.get(role, 0) for role, n in now.items()}
        self._reported = now
        return {role: n for role, n in delta.items() if n}

    def _staged_items(self, items: list[WorkItem], results: list[Outcome | None]) -> None:
        """Issuance and OCSP items of the batch go through the staged pipeline, kind by kind
        (pre-signing jobs send OCSP requests by the hundred)."""
        assert self.registry is not None
        for kind, run in (
            (IssueRequest, build.issue_batch),
            (OcspRequest, build.sign_ocsp_batch),
        ):
            index = [i for i, item in enumerate(items) if type(item) is kind]
            if not index:
                continue
            signed = run(self.registry, [items[i] for i in index])  # type: ignore[arg-type]
            for i, out in zip(index, signed, strict=True):
                results[i] = Outcome.failed(out) if isinstance(out, SignerError) else Outcome(out)

    def _one(self, item: WorkItem) -> Outcome:
        """A CRL, an audit checkpoint or a CMP signature: one item, one signature."""
        assert self.registry is not None
        try:
            return Outcome(self._sign_one(item))
        except TokenFault:
            raise
        except SignerError as exc:
            return Outcome.failed(exc)
        except Exception as exc:
            if (fault := token_fault(exc, "signing")) is not None:
                raise fault from None
            return Outcome.failed(build.unforeseen(exc, type(item).__name__))

    def _sign_one(self, item: WorkItem) -> bytes:
        assert self.registry is not None
        if isinstance(item, CrlItem):
            return build.sign_crl(self.registry, item.request())
        if isinstance(item, CheckpointRequest):
            # the daemon has admitted it (signer/checkpoints.py); the audit key signs here
            if self.audit is None:
                raise SignerError(ErrorKind.UNKNOWN_ISSUER, "no audit key: run `ca-keys audit-key`")
            return self.audit.sign(item)
        if isinstance(item, CmpRequest):  # the CMP protection key (signer/cmp_protection.py)
            if self.cmp is None:
                raise SignerError(ErrorKind.UNKNOWN_ISSUER, "no CMP key: run `ca-keys cmp-key`")
            return self.cmp.handle(item, self.registry.clock())
        raise SignerError(ErrorKind.BAD_REQUEST, f"unknown item {type(item).__name__}")

    def serve(self) -> None:
        self.connect(first=True)
        while True:
            try:
                msg = self.link.recv()
            except (EOFError, OSError):
                return  # the pool went away: nothing left to serve
            if isinstance(msg, Stop):
                return
            try:
                ok = self.run_batch(msg)
            except Exception:
                # items fail one by one (build.unforeseen): this is a fault in the batch
                # logic itself; its items fail, and the process (and its session) serve on
                log.exception("batch failed outside any item")
                self.fail_batch(msg, ErrorKind.INTERNAL, "internal signer error")
                continue
            if not ok:
                log.warning("token fault: reopening the session")
                self.connect(first=False)


def worker_main(config_path: str, index: int, sock: socket.socket, stagger: float) -> None:
    """Entry point of a worker process (started with the ``spawn`` method)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when workers stop
    configure_logging("info", fields={"worker": index})  # the daemon's format, with the index
    cfg = load(config_path)
    scfg = load_signer_config(cfg)
    configure_logging(scfg.log_level, fields={"worker": index})  # [signer] log_level, as the daemon
    if scfg.pin_cpus and hasattr(os, "sched_setaffinity"):
        # one worker per core keeps each worker's caches warm; the RPC process floats
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    # staggered log-in: SoftHSM rewrites token files at login
    time.sleep(index * stagger)
    worker = Worker(Link(sock), scfg, TokenHandle(token_config(cfg)))
    threading.Thread(
        target=worker.heartbeat, args=(scfg.heartbeat_timeout / 4,), name="heartbeat", daemon=True
    ).start()
    try:
        worker.serve()
    finally:
        worker.handle.close()
