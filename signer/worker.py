"""A signing worker: one process, one PKCS#11 context, one logged-in session.

python-pkcs11 initialises the module without ``CKF_OS_LOCKING_OK``, so SoftHSM is not safe to
share between threads; a process per worker gives real parallelism on the token instead. The
worker receives batches over a socket from the pool, runs each item through the issuance
pipeline and returns one result per item. On a token fault it answers what it holds with a
retryable error, then heals: re-initialise the module, log in again, find the keys, cross-check
them against the issuer certificates and make a test signature before it reports ready again.
While healing it keeps answering (with ``token_unavailable``) so nobody waits on it.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsm_config.config import ConfigError, load, token_config
from signer.config import SignerConfig, load_signer_config
from signer.errors import ErrorKind, SignerError
from signer.hsm.errors import TokenFault, describe, is_token_fault
from signer.hsm.token import TokenHandle
from signer.issuance import build, verify
from signer.issuance.issuer import Issuer
from signer.protocol import HEADER, CrlRequest, IssueRequest, OcspRequest

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

    def send(self, msg: dict[str, Any]) -> None:
        payload = msgpack.packb(msg, use_bin_type=True)
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


def open_registry(handle: TokenHandle, scfg: SignerConfig) -> build.Registry:
    """Find every issuer's key on the token and prove it matches the issuer certificate."""
    issuers: dict[str, Issuer] = {}
    for spec in scfg.issuers.values():
        try:
            token_public = handle.find_public_key(spec.key_label)
        except TokenFault:
            raise
        except Exception as exc:
            if is_token_fault(exc):
                raise TokenFault(f"finding key {spec.key_label!r}: {describe(exc)}", exc) from None
            raise ConfigError(
                f"issuer {spec.name}: key {spec.key_label!r} not usable on the token: "
                f"{describe(exc)}"
            ) from exc
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
        # test signature: the key signs, and the signature verifies with the certificate's key
        if isinstance(issuer.public_key, rsa.RSAPublicKey):
            sig = key.sign(TEST_MESSAGE, padding.PKCS1v15(), issuer.hash_algorithm)
        else:
            sig = key.sign(TEST_MESSAGE, ec.ECDSA(issuer.hash_algorithm))
        verify.signature(issuer, sig, TEST_MESSAGE, issuer.hash_algorithm)
        issuers[spec.name] = issuer
    return build.Registry(issuers, scfg.profiles, time.time)


class Worker:
    def __init__(self, link: Link, scfg: SignerConfig, handle: TokenHandle) -> None:
        self.link = link
        self.scfg = scfg
        self.handle = handle
        self.registry: build.Registry | None = None

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
        fault: TokenFault | None = None
        try:
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
        done = sum(1 for r in results if r is not None and "der" in r)
        per_item = (time.perf_counter() - t0) / max(1, len(items))
        self.send(
            {
                "t": "result",
                "id": msg["id"],
                "results": results,
                "durations": [per_item] * done,
                "token_fault": fault is not None,
            }
        )
        return fault is None

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
        operation = OPERATIONS.get(op)
        if operation is None:
            return {"error": ErrorKind.BAD_REQUEST.value, "message": f"unknown operation {op!r}"}
        parse, run = operation
        try:
            return {"der": run(self.registry, parse(item))}
        except TokenFault:
            raise
        except SignerError as exc:
            return {"error": exc.kind.value, "message": exc.message}
        except Exception as exc:
            err = build.unforeseen(exc, op)  # re-raises a token fault
            return {"error": err.kind.value, "message": err.message}

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
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s worker-{index} %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    cfg = load(config_path)
    scfg = load_signer_config(cfg)
    if scfg.pin_cpus and hasattr(os, "sched_setaffinity"):
        # one worker per core keeps each worker's caches warm; the RPC process floats
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    # staggered log-in: SoftHSM rewrites token files at login
    time.sleep(index * stagger)
    worker = Worker(Link(sock), scfg, TokenHandle(token_config(cfg)))
    try:
        worker.serve()
    finally:
        worker.handle.close()
