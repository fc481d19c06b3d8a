"""The signer heals itself: worker deaths and a vanishing network HSM, real daemon, real token.

Every test runs the real ``ca-signer`` daemon on a real SoftHSM token and asserts what a caller
sees: each request ends with a certificate that chains to the issuing CA, or with a *retryable*
error, and never hangs; afterwards the daemon (same process) serves certificates again. The
network HSM is the token served by ``p11-kit server`` and reached through p11-kit's client
module; the test SIGKILLs the server under load and starts it again on the same socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config.loader import load
from config.token import token_config
from signer.client import Address, Connection, SignerClient
from signer.codec import Frame
from signer.config import load_signer_config
from signer.errors import ErrorKind, SignerError
from signer.protocol import IssueRequest
from tests.support import p11kit
from tests.support.signer_proc import BIN, running_signer, socket_of

# what a caller may see instead of a certificate while a worker or the token is being replaced
RECOVERABLE = {ErrorKind.WORKER_FAILED, ErrorKind.TOKEN_UNAVAILABLE}
CALL_BOUND = 3.0  # seconds: no single call may take longer than this, even mid-outage

needs_p11kit = pytest.mark.skipif(not p11kit.available(), reason="p11-kit server not installed")


# -- set-up --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CA:
    config: Path
    label: str
    pin: str
    so_pin: str | None
    issuing: x509.Certificate
    root: x509.Certificate
    spki: bytes

    @property
    def address(self) -> str:
        return f"unix:{socket_of(self.config)}"

    def request(self) -> IssueRequest:
        now = int(time.time())
        return IssueRequest(
            spki=self.spki,
            subject=(("2.5.4.6", "TW"), ("2.5.4.3", f"resilience {secrets.token_hex(4)}")),
            profile="signing",
            serial=secrets.randbits(127) | (1 << 126),
            not_before=now - 60,
            not_after=now + 30 * 86400,
        )

    def check(self, der: bytes, request: IssueRequest) -> None:
        """The DER is the requested certificate, signed by the issuing CA (chain to the root)."""
        cert = x509.load_der_x509_certificate(der)
        assert cert.serial_number == request.serial
        cert.verify_directly_issued_by(self.issuing)
        assert cert.issuer == self.issuing.subject


@pytest.fixture(scope="module")
def ca(ca_config_ec: Path) -> CA:
    """The module's P-256 CA (tests/hsm/conftest.py), with what the checks below need."""
    config = ca_config_ec
    raw = load(config, environ={})
    tok = token_config(raw)
    issuers = load_signer_config(raw).issuers.values()
    issuing = next(i.certificate for i in issuers if i.active)
    root = next(i.certificate for i in issuers if i.role == "root")
    issuing.verify_directly_issued_by(root)
    subject_key = ec.generate_private_key(ec.SECP256R1())
    spki = subject_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CA(config, tok.label, tok.pin, tok.so_pin, issuing, root, spki)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: AF_UNIX socket paths must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="p11k-") as d:
        yield Path(d)


@contextlib.asynccontextmanager
async def daemon(ca: CA, **kwargs: Any) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``running_signer`` from async code (its readiness check runs its own event loop)."""
    cm = running_signer(ca.config, **kwargs)
    proc = await asyncio.to_thread(cm.__enter__)
    try:
        yield proc
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def health(ca: CA) -> dict[str, Any]:
    """The raw health body, also when the signer is down (``SignerClient.health`` raises then)."""
    conn = Connection(Address.parse(ca.address), None)
    try:
        frame = await conn.call(Frame(id=0, op="health"), 3.0)
        assert frame.body is not None
        return frame.body
    finally:
        await conn.close()


async def wait_for_health(ca: CA, ok: Any, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    body: dict[str, Any] = {}
    while time.monotonic() < end:
        body = await health(ca)
        if ok(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"health did not get there in {seconds}s; last: {body}")


def all_ready(body: dict[str, Any]) -> bool:
    return body["status"] == "ok" and all(w["state"] == "ready" for w in body["workers"])


async def scrape(port: int) -> dict[str, float]:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return resp.read().decode()

    values: dict[str, float] = {}
    for line in (await asyncio.to_thread(get)).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def leaks(ca: CA, texts: dict[str, str]) -> list[str]:
    """Names of the texts that contain a PIN (never the PIN itself, not even in a failure)."""
    pins = [p for p in (ca.pin, ca.so_pin) if p]
    return [name for name, text in texts.items() if any(p in text for p in pins)]


class Outcomes:
    """What every call ended with; anything but a checked certificate or a recoverable error
    (or a call slower than ``CALL_BOUND``) is recorded as a failure."""

    def __init__(self, ca: CA) -> None:
        self.ca = ca
        self.kinds: Counter[str] = Counter()
        self.bad: list[str] = []
        self.slowest = 0.0

    def record(self, request: IssueRequest, outcome: bytes | BaseException | None) -> None:
        if isinstance(outcome, bytes):
            try:
                self.ca.check(outcome, request)
            except Exception as exc:
                self.bad.append(f"certificate does not check: {exc!r}")
            self.kinds["ok"] += 1
        elif isinstance(outcome, SignerError):
            self.kinds[outcome.kind.value] += 1
            if not (outcome.retryable and outcome.kind in RECOVERABLE):
                self.bad.append(f"unexpected error {outcome!r}")
        else:
            self.bad.append(f"unexpected outcome {outcome!r}")

    async def call(self, client: SignerClient) -> None:
        request = self.ca.request()
        t0 = time.monotonic()
        try:
            der: bytes | BaseException = await asyncio.wait_for(client.issue(request), CALL_BOUND)
        except TimeoutError:
            der = TimeoutError(f"issue() did not return within {CALL_BOUND}s")
        except Exception as exc:
            der = exc
        self.slowest = max(self.slowest, time.monotonic() - t0)
        self.record(request, der)


# -- a: a worker killed mid-batch ----------------------------------------------------------------
async def test_worker_killed_mid_batch_loses_nothing_and_pool_recovers(ca: CA) -> None:
    """The killed worker's items are retried once on the other worker of the same signer:
    every one of them ends with a certificate, none with ``worker_failed``."""
    async with daemon(ca, workers=2) as proc:
        client = SignerClient([ca.address], timeout=30, batch_max=16)
        try:
            outcomes = Outcomes(ca)
            many = [ca.request() for _ in range(600)]
            singles = [ca.request() for _ in range(240)]
            many_task = asyncio.create_task(client.issue_many(many))
            single_tasks = [asyncio.create_task(client.issue(r)) for r in singles]

            # kill -9 a worker while it holds batches
            victim = None
            end = time.monotonic() + 10
            while victim is None and time.monotonic() < end:
                body = await health(ca)
                busy = [w for w in body["workers"] if w["state"] == "ready" and w["inflight"]]
                if busy:
                    victim = busy[0]
                    os.kill(victim["pid"], signal.SIGKILL)
                else:
                    await asyncio.sleep(0.005)
            assert victim is not None, "no worker ever had work in flight"

            # every item ends, within a bound, with a certificate or a retryable error
            results = await asyncio.wait_for(many_task, 60)
            assert len(results) == len(many)
            for request, result in zip(many, results, strict=True):
                outcomes.record(request, result.der if result.error is None else result.error)
            done = await asyncio.wait_for(asyncio.gather(*single_tasks, return_exceptions=True), 60)
            for request, outcome in zip(singles, done, strict=True):
                outcomes.record(request, outcome)
            assert not outcomes.bad, outcomes.bad[:5]
            assert outcomes.kinds["ok"] == len(many) + len(singles), outcomes.kinds
            print(f"worker {victim['index']} killed mid-batch: {dict(outcomes.kinds)}")

            # the pool replaces the worker and serves again; the daemon itself never restarted
            body = await wait_for_health(ca, all_ready, 30)
            slot = body["workers"][victim["index"]]
            assert slot["restarts"] >= 1
            assert slot["pid"] != victim["pid"]
            fresh = [ca.request() for _ in range(40)]
            for request, result in zip(
                fresh, await asyncio.wait_for(client.issue_many(fresh), 30), strict=True
            ):
                ca.check(result.unwrap(), request)
            assert proc.poll() is None
        finally:
            await client.close()


# -- a2: a worker that hangs on the token ---------------------------------------------------------
async def test_stalled_worker_is_replaced_and_its_items_move(ca: CA) -> None:
    """A token that stops answering (here: the worker frozen with SIGSTOP) must not hold
    requests: its items move to the other worker when its heartbeats stop, the watchdog kills
    it after ``stall_seconds``, and a fresh worker takes over."""
    async with daemon(ca, workers=2, env={"CA_SIGNER_STALL_SECONDS": "2"}) as proc:
        client = SignerClient([ca.address], timeout=30)
        try:
            body = await health(ca)
            victim = body["workers"][0]
            os.kill(victim["pid"], signal.SIGSTOP)
            many = [ca.request() for _ in range(400)]
            t0 = time.monotonic()
            results = await asyncio.wait_for(client.issue_many(many), 20)
            elapsed = time.monotonic() - t0
            outcomes = Outcomes(ca)
            for request, result in zip(many, results, strict=True):
                outcomes.record(request, result.der if result.error is None else result.error)
            assert not outcomes.bad, outcomes.bad[:5]
            assert outcomes.kinds["ok"] == len(many), outcomes.kinds
            assert elapsed < 15, elapsed
            body = await wait_for_health(ca, all_ready, 30)
            assert body["workers"][0]["pid"] != victim["pid"]
            request = ca.request()
            ca.check(await client.issue(request), request)
            assert proc.poll() is None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim["pid"], signal.SIGKILL)
            await client.close()


# -- a3: a busy worker frozen for 15 s: nobody notices but the metrics --------------------------
FREEZE_SECONDS = 15.0
EXTRA_WAIT_BOUND = 2.0  # no call may take this much longer than the slowest one before the freeze


async def _paced_load(
    client: SignerClient, outcomes: Outcomes, stop: asyncio.Event, latencies: list[float]
) -> None:
    """One caller: a certificate, a short pause, again, until ``stop``."""
    while not stop.is_set():
        request = outcomes.ca.request()
        t0 = time.monotonic()
        try:
            der: bytes | BaseException = await client.issue(request)
        except Exception as exc:
            der = exc
        latencies.append(time.monotonic() - t0)
        outcomes.record(request, der)
        await asyncio.sleep(0.005)


async def test_frozen_busy_worker_is_seen_and_its_items_move_without_delay(ca: CA) -> None:
    """SIGSTOP a worker that holds items, for 15 s, under load: its heartbeats stop, the pool
    reports it stalled (metrics, health ``degraded``) within seconds and moves its items to the
    other worker, so no call fails or waits more than ~2 s longer than before; after SIGCONT it
    serves again (stall_seconds, 30 s, is not reached: it is not replaced)."""
    port = free_port()
    env = {"CA_SIGNER_HEARTBEAT_TIMEOUT": "1", "CA_SIGNER_METRICS_PORT": str(port)}
    async with daemon(ca, workers=2, env=env) as proc:
        client = SignerClient([ca.address], timeout=30, batch_max=8)
        stop = asyncio.Event()
        victim: dict[str, Any] | None = None
        try:
            # before: the normal latency under the same load
            before: list[float] = []
            outcomes = Outcomes(ca)
            callers = [
                asyncio.create_task(_paced_load(client, outcomes, stop, before)) for _ in range(6)
            ]
            await asyncio.sleep(1.0)
            normal = max(before)
            during: list[float] = []
            for task in callers:
                task.cancel()
            await asyncio.gather(*callers, return_exceptions=True)
            callers = [
                asyncio.create_task(_paced_load(client, outcomes, stop, during)) for _ in range(6)
            ]

            end = time.monotonic() + 10
            while victim is None and time.monotonic() < end:
                body = await health(ca)
                busy = [w for w in body["workers"] if w["state"] == "ready" and w["inflight"]]
                if busy:
                    victim = busy[0]
                    os.kill(victim["pid"], signal.SIGSTOP)
                else:
                    await asyncio.sleep(0.002)
            assert victim is not None, "no worker ever had work in flight"
            frozen_at = time.monotonic()

            # the stall shows in the metrics and the health within 5 s
            seen = None
            while time.monotonic() - frozen_at < 5 and seen is None:
                values = await scrape(port)
                if values.get('ca_signer_workers{state="stalled"}') == 1:
                    seen = time.monotonic() - frozen_at
                await asyncio.sleep(0.1)
            assert seen is not None, 'ca_signer_workers{state="stalled"} never showed'
            body = await health(ca)
            assert body["status"] == "degraded", body
            assert body["workers"][victim["index"]]["state"] == "stalled", body

            await asyncio.sleep(max(0.0, FREEZE_SECONDS - (time.monotonic() - frozen_at)))
            os.kill(victim["pid"], signal.SIGCONT)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*callers), 30)

            assert not outcomes.bad, outcomes.bad[:5]
            assert set(outcomes.kinds) == {"ok"}, outcomes.kinds  # nothing failed, not even
            assert len(during) > 100, len(during)  # retryably; and the load went on
            slowest = max(during)
            print(
                f"normal max {normal:.3f}s, during the freeze max {slowest:.3f}s, "
                f"stall seen after {seen:.2f}s, {len(during)} calls"
            )
            assert slowest < normal + EXTRA_WAIT_BOUND, (normal, slowest)

            # the same process serves again: it was not replaced
            body = await wait_for_health(ca, all_ready, 10)
            assert body["workers"][victim["index"]]["pid"] == victim["pid"]
            values = await scrape(port)
            assert values.get('ca_signer_workers{state="stalled"}') == 0
            assert proc.poll() is None
        finally:
            stop.set()
            if victim is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim["pid"], signal.SIGCONT)
            await client.close()


# -- b: the network HSM goes away and comes back --------------------------------------------------
@needs_p11kit
async def test_network_hsm_outage_heals_without_restart(ca: CA, short_dir: Path) -> None:
    port = free_port()
    server = p11kit.P11KitServer(short_dir / "hsm.sock", ca.label)
    server.start()
    env = server.client_env() | {"CA_SIGNER_METRICS_PORT": str(port)}
    try:
        async with daemon(ca, workers=2, env=env, log=short_dir / "signer.log") as proc:
            client = SignerClient([ca.address], timeout=10, batch_max=8)
            outcomes = Outcomes(ca)
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    await asyncio.gather(*(outcomes.call(client) for _ in range(12)))
                    await asyncio.sleep(0.01)  # callers do not spin on a failing signer

            loader = asyncio.create_task(load())
            try:
                await asyncio.sleep(1.5)
                assert outcomes.kinds["ok"] > 0 and set(outcomes.kinds) == {"ok"}, outcomes.kinds
                assert (await scrape(port))["ca_signer_token_up"] == 1

                # the HSM vanishes under load: calls fail fast and retryably; health says so
                server.kill()
                outage_states: set[str] = set()
                outage_status: set[str] = set()
                token_up_during: set[float] = set()
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    body = await health(ca)
                    outage_status.add(body["status"])
                    outage_states.update(w["state"] for w in body["workers"])
                    token_up_during.add((await scrape(port))["ca_signer_token_up"])
                    await asyncio.sleep(0.1)
                failures_during = sum(n for k, n in outcomes.kinds.items() if k != "ok")
                assert failures_during > 0, outcomes.kinds
                assert "down" in outage_status, outage_status
                assert "healing" in outage_states, outage_states
                assert 0 in token_up_during

                # it comes back on the same socket: the same daemon serves again
                server.start()
                restarted = time.monotonic()
                await wait_for_health(ca, all_ready, 20)
                healed_after = time.monotonic() - restarted
                ok_before = outcomes.kinds["ok"]
                await asyncio.sleep(1.0)
                assert outcomes.kinds["ok"] > ok_before, "no certificates after the HSM came back"
            finally:
                stop.set()
                await asyncio.wait_for(loader, 2 * CALL_BOUND)
                await client.close()

            assert not outcomes.bad, outcomes.bad[:5]
            assert outcomes.slowest < CALL_BOUND
            assert proc.poll() is None  # healed in place: the daemon never restarted
            metrics = await scrape(port)
            assert metrics["ca_signer_token_up"] == 1
            assert metrics["ca_signer_token_faults_total"] > 0
            print(f"healed {healed_after:.1f}s after the HSM came back; {dict(outcomes.kinds)}")
        log = {"daemon log": (short_dir / "signer.log").read_text(errors="replace")}
        assert not leaks(ca, log), "a PIN appears in the daemon log"
    finally:
        server.stop()


# -- c: PINs never reach a log -------------------------------------------------------------------
@needs_p11kit
async def test_pins_absent_from_logs(ca: CA, short_dir: Path) -> None:
    log = short_dir / "signer.log"
    server = p11kit.P11KitServer(short_dir / "hsm.sock", ca.label)
    server.start()
    env = server.client_env() | {"CA_SIGNER_LOG_LEVEL": "debug"}
    seen: dict[str, str] = {}
    try:
        async with daemon(ca, workers=2, env=env, log=log):
            client = SignerClient([ca.address], timeout=10)
            try:
                request = ca.request()
                ca.check(await asyncio.wait_for(client.issue(request), 10), request)
                # a token fault (the HSM vanishes and comes back) and a worker death
                server.kill()
                with pytest.raises(SignerError) as fault:
                    await asyncio.wait_for(client.issue(ca.request()), CALL_BOUND)
                assert fault.value.retryable
                server.start()
                body = await wait_for_health(ca, all_ready, 20)
                os.kill(body["workers"][0]["pid"], signal.SIGKILL)
                body = await wait_for_health(
                    ca, lambda b: all_ready(b) and b["workers"][0]["restarts"] >= 1, 30
                )
                seen["health"] = repr(body)
                request = ca.request()
                ca.check(await asyncio.wait_for(client.issue(request), 10), request)
            finally:
                await client.close()
    finally:
        server.stop()
    seen["daemon log"] = log.read_text(encoding="utf-8", errors="replace")
    assert "healing" in seen["daemon log"] and "exited" in seen["daemon log"]  # faults logged

    for name, module_env in (("softhsm", {}), ("p11-kit", server.client_env())):
        if module_env:
            server.start()
        try:
            check = subprocess.run(
                [str(BIN / "ca-signer"), "--config", str(ca.config), "--check-config"],
                env=os.environ | module_env | {"CA_SIGNER_LOG_LEVEL": "debug"},
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.stop()
        assert check.returncode == 0, f"--check-config via {name} failed"
        seen[f"--check-config via {name}"] = check.stdout + check.stderr

    assert not leaks(ca, seen), f"a PIN appears in: {leaks(ca, seen)}"
