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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from config.loader import ConfigError, load
from config.logs import configure_logging
from config.token import token_config
from signer.checkpoints import AuditSigner
from signer.cmp_protection import CmpSigner, CmpSlot
from signer.config import SignerConfig, load_signer_config
from signer.errors import ErrorKind, SignerError
from signer.hsm.errors import TokenFault, describe, is_token_fault
from signer.hsm.keys import signature_hash
from signer.hsm.token import PublicKey, TokenHandle
from signer.issuance import build, verify
from signer.issuance.issuer import Issuer, TokenKey
from signer.issuance.responder import Responders, ResponderSlot
from signer.protocol import (
    HEADER,
    CheckpointRequest,
    CmpRequest,
    CrlRequest,
    IssueRequest,
    OcspRequest,
)
from signer.role_keys import load_public_key

log = logging.getLogger("signer.worker")

TEST_MESSAGE = b"signer self-test: the key on the token matches the issuer certificate"

OPERATIONS = {
    "issue": (IssueRequest.from_wire, build.issue_certificate),
    "crl": (CrlRequest.from_wire, build.sign_crl),
    "ocsp": (OcspRequest.from_wire, build.sign_ocsp),
}


class Link:
    """The worker's end of its socket to the pool: length-prefixed msgpack messages, blocking.

    The pool reads the other end on its event loop. Reads take exactly one message and nothing
    more, so ``poll()`` can ask the socket whether the next one has begun to arrive.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()  # the heartbeat thread sends too

    def send(self, msg: dict[str, Any]) -> None:
        payload = msgpack.packb(msg, use_bin_type=True)
        with self._send_lock:
            self.sock.sendall(HEADER.pack(len(payload)) + payload)

    def poll(self, timeout: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout)[0])

    def recv(self) -> dict[str, Any]:
        """The next message; ``EOFError`` when the pool has gone."""
        (length,) = HEADER.unpack(self._exactly(HEADER.size))
        return msgpack.unpackb(self._exactly(length), raw=False)

    def _exactly(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            chunk = self.sock.recv_into(view[got:], n - got)
            if chunk == 0:
                raise EOFError("the pool closed the link")
            got += chunk
        return buf


def _find_key(handle: TokenHandle, name: str, label: str) -> PublicKey:
    try:
        return handle.find_public_key(label)
    except TokenFault:
        raise
    except Exception as exc:
        if is_token_fault(exc):
            raise TokenFault(f"finding key {label!r}: {describe(exc)}", exc) from None
        raise ConfigError(
            f"issuer {name}: key {label!r} not usable on the token: {describe(exc)}"
        ) from exc


def _test_signature(key: TokenKey, public: PublicKey, name: str) -> None:
    """The key signs, and the signature verifies with the public key it must match."""
    hash_algorithm = signature_hash(public)
    if isinstance(public, rsa.RSAPublicKey):
        sig = key.sign(TEST_MESSAGE, padding.PKCS1v15(), hash_algorithm)
    else:
        sig = key.sign(TEST_MESSAGE, ec.ECDSA(hash_algorithm))
    verify.signature(_Probe(name, public), sig, TEST_MESSAGE, hash_algorithm)


@dataclass(frozen=True)
class _Probe:
    name: str
    public_key: PublicKey


def open_registry(
    handle: TokenHandle, scfg: SignerConfig, clock: Callable[[], float] = time.time
) -> build.Registry:
    """Find every online issuer's key and OCSP responder key on the token, prove each with a
    test signature, and make sure each responder has a current certificate.

    Root CAs are not among them: their keys are on the offline root token, which the signer
    never opens.
    """
    issuers: dict[str, Issuer] = {}
    slots: dict[str, ResponderSlot] = {}
    for spec in scfg.online_issuers:
        token_public = _find_key(handle, spec.name, spec.key_label)
        if token_public != spec.certificate.public_key():
            raise ConfigError(
                f"issuer {spec.name}: the certificate does not match token key {spec.key_label!r}"
            )
        key = handle.signing_key(spec.key_label, token_public)
        issuer = Issuer(
            name=spec.name,
            role=spec.role,
            active=spec.active,
            certificate=spec.certificate,
            key=key,
            public_url=scfg.public_url,
        )
        _test_signature(key, token_public, spec.name)
        issuers[spec.name] = issuer
        if spec.ocsp_key_label:
            responder_public = _find_key(handle, spec.name, spec.ocsp_key_label)
            responder_key = handle.signing_key(spec.ocsp_key_label, responder_public)
            _test_signature(responder_key, responder_public, f"{spec.name}-ocsp")
            slots[spec.name] = ResponderSlot(
                issuer, responder_key, scfg.state_dir, scfg.ocsp_responder_validity_days
            )
        else:
            log.warning(
                "issuer %s has no OCSP responder key: its OCSP answers are refused", spec.name
            )
    responders = Responders(slots)
    responders.refresh(clock())
    return build.Registry(issuers, scfg.profiles, clock, responders, scfg.bounds)


def key_signatures(registry: build.Registry) -> dict[str, int]:
    """Signatures made so far by the registry's keys, by role: ``ca`` (issuing CA keys:
    certificates, CRLs, responder certificates) and ``ocsp`` (responder keys: OCSP answers)."""
    return {
        "ca": sum(i.key.signatures for i in registry.issuers.values()),
        "ocsp": sum(k.signatures for k in registry.responders.keys()),
    }


def _recorded_key(
    handle: TokenHandle, name: str, label: str, path: Path | None
) -> tuple[TokenKey, PublicKey] | None:
    """A role key (signer/role_keys.py) found on the token and matched against the public
    key its ceremony recorded; None when none was recorded (its operation is then refused)."""
    if path is None or not path.exists():
        return None
    public = load_public_key(path)
    token_public = _find_key(handle, name, label)
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
    _test_signature(key, public, "cmp")
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
        """Body of the heartbeat thread: ``{"t": "hb", "busy": seconds}`` until the link
        closes."""
        while True:
            started = self.busy_since
            busy = 0.0 if started is None else time.monotonic() - started
            try:
                self.send({"t": "hb", "busy": round(busy, 3)})
            except OSError:
                return
            time.sleep(interval)

    def send(self, msg: dict[str, Any]) -> None:
        self.link.send(msg)

    def state(self, state: str, detail: str = "") -> None:
        self.send({"t": "state", "state": state, "detail": detail, "pid": os.getpid()})

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
                if not (isinstance(exc, TokenFault) or is_token_fault(exc)):
                    log.exception("unexpected error while opening the token")
                self.state("healing", describe(exc))
                log.warning("token unavailable, retrying in %.1fs: %s", delay, describe(exc))
                self.registry = None
                self.drain(delay)
                delay = min(delay * 2, 5.0)

    def fail_batch(self, msg: dict[str, Any], kind: ErrorKind, message: str) -> None:
        """Answer every item of a batch with one error (the pool ignores a second answer)."""
        err = {"error": kind.value, "message": message}
        self.send(
            {
                "t": "result",
                "id": msg["id"],
                "results": [err] * len(msg["items"]),
                "durations": [],
                "token_fault": False,
            }
        )

    def drain(self, seconds: float) -> None:
        """Wait up to ``seconds``, failing any batch that arrives meanwhile as retryable."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.link.poll(left):
                msg = self.link.recv()
                if msg.get("t") == "batch":
                    err = {"error": ErrorKind.TOKEN_UNAVAILABLE.value, "message": "token healing"}
                    self.send(
                        {
                            "t": "result",
                            "id": msg["id"],
                            "results": [err] * len(msg["items"]),
                            "durations": [],
                            "token_fault": False,
                        }
                    )

    # -- work ------------------------------------------------------------------------------
    def run_batch(self, msg: dict[str, Any]) -> bool:
        """Process one batch; returns False when a token fault means the session is gone."""
        assert self.registry is not None
        items: list[tuple[str, Any]] = msg["items"]
        results: list[dict[str, Any] | None] = [None] * len(items)
        t0 = time.perf_counter()
        self.busy_since = time.monotonic()
        fault: TokenFault | None = None
        try:
            # a responder certificate close to its end is renewed before the batch's answers
            self.registry.responders.refresh(self.registry.clock())
            self._staged_items(items, results)
            for i, (op, item) in enumerate(items):
                if results[i] is None:
                    results[i] = self._one(op, item)
        except TokenFault as exc:
            fault = exc
        except Exception as exc:
            if not is_token_fault(exc):
                raise
            fault = TokenFault(f"token fault: {describe(exc)}", exc)
        if fault is not None:
            failed = {"error": fault.kind.value, "message": fault.message}
            # what was signed and verified before the fault stands; the rest may be retried
            results = [failed if r is None else r for r in results]
        self.busy_since = None
        done = sum(1 for r in results if r is not None and "der" in r)
        per_item = (time.perf_counter() - t0) / max(1, len(items))
        self.send(
            {
                "t": "result",
                "id": msg["id"],
                "results": results,
                "durations": [per_item] * done,
                "token_fault": fault is not None,
                "key_signatures": self._key_signatures_since_last(),
            }
        )
        return fault is None

    def _key_signatures_since_last(self) -> dict[str, int]:
        assert self.registry is not None
        now = key_signatures(self.registry)
        delta = {role: n - self._reported.get(role, 0) for role, n in now.items()}
        self._reported = now
        return {role: n for role, n in delta.items() if n}

    def _staged_items(self, items: list[tuple[str, Any]], results: list[Any]) -> None:
        """Issuance and OCSP items of the batch go through the staged pipeline, op by op
        (pre-signing jobs send OCSP requests by the hundred)."""
        assert self.registry is not None
        for op, parse, run in (
            ("issue", IssueRequest.from_wire, build.issue_batch),
            ("ocsp", OcspRequest.from_wire, build.sign_ocsp_batch),
        ):
            index: list[int] = []
            reqs: list[Any] = []
            for i, (item_op, item) in enumerate(items):
                if item_op != op:
                    continue
                try:
                    reqs.append(parse(item))
                    index.append(i)
                except SignerError as exc:
                    results[i] = {"error": exc.kind.value, "message": exc.message}
                except Exception as exc:  # a shape from_wire did not foresee
                    err = build.unforeseen(exc, "parse")
                    results[i] = {"error": err.kind.value, "message": err.message}
            if not reqs:
                continue
            for i, out in zip(index, run(self.registry, reqs), strict=True):
                if isinstance(out, SignerError):
                    results[i] = {"error": out.kind.value, "message": out.message}
                else:
                    results[i] = {"der": out}

    def _one(self, op: str, item: Any) -> dict[str, Any]:
        assert self.registry is not None
        registry = self.registry
        if op == "checkpoint":  # the audit key, not an issuer's (signer/checkpoints.py)

            def work() -> bytes:
                return self._checkpoint(item)

        elif op == "cmp":  # the CMP protection key (signer/cmp_protection.py)

            def work() -> bytes:
                if self.cmp is None:
                    raise SignerError(ErrorKind.UNKNOWN_ISSUER, "no CMP key: run `ca-keys cmp-key`")
                return self.cmp.handle(CmpRequest.from_wire(item), registry.clock())

        else:
            operation = OPERATIONS.get(op)
            if operation is None:
                message = f"unknown operation {op!r}"
                return {"error": ErrorKind.BAD_REQUEST.value, "message": message}
            parse, run = operation

            def work() -> bytes:
                return run(registry, parse(item))

        try:
            return {"der": work()}
        except TokenFault:
            raise
        except SignerError as exc:
            return {"error": exc.kind.value, "message": exc.message}
        except Exception as exc:
            err = build.unforeseen(exc, op)  # re-raises a token fault
            return {"error": err.kind.value, "message": err.message}

    def _checkpoint(self, item: Any) -> bytes:
        """The daemon has admitted it (signer/checkpoints.py); the audit key signs here."""
        if self.audit is None:
            raise SignerError(ErrorKind.UNKNOWN_ISSUER, "no audit key: run `ca-keys audit-key`")
        return self.audit.sign(CheckpointRequest.from_wire(item))

    def serve(self) -> None:
        self.connect(first=True)
        while True:
            try:
                msg = self.link.recv()
            except (EOFError, OSError):
                return  # the pool went away: nothing left to serve
            kind = msg.get("t")
            if kind == "stop":
                return
            if kind == "batch":
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
