"""The pool's stall logic without processes: a worker stuck on its batch while its heartbeat
thread still beats (the token hangs inside C_Sign, which releases the GIL), and one that falls
silent. The real daemon with a SIGSTOPped worker is in tests/hsm/test_signer_resilience.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
from prometheus_client import CollectorRegistry

from signer.codec import HEADER, Answer, Heartbeat
from signer.metrics import SignerMetrics
from signer.pool import WorkerPool
from signer.protocol import Outcome


class FakeWriter:
    """Records the batches the pool sends to one worker."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        msg = msgpack.unpackb(data[HEADER.size :], raw=False)
        if msg.get("t") == "batch":
            self.batches.append(msg)


class FakeProcess:
    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True


def ready_pool(heartbeat_timeout: float = 1.0) -> tuple[WorkerPool, list[FakeWriter]]:
    registry = CollectorRegistry()
    pool = WorkerPool(
        "unused.toml",
        2,
        SignerMetrics(registry),
        heartbeat_timeout=heartbeat_timeout,
        pipeline_depth=1,
    )
    pool.loop = asyncio.get_running_loop()
    writers = []
    for slot in pool.slots:
        writer = FakeWriter()
        writers.append(writer)
        slot.state, slot.writer, slot.process = "ready", writer, FakeProcess()  # type: ignore[assignment]
        slot.last_seen = time.monotonic()
    return pool, writers


def answer(pool: WorkerPool, index: int, batch: dict[str, Any], result: dict[str, Any]) -> None:
    slot = pool.slots[index]
    outcome = Outcome(**result)
    pool._on_message(slot, slot.generation, Answer(batch["id"], [outcome] * len(batch["items"])))


def gauge(pool: WorkerPool, state: str) -> float:
    return pool.metrics.workers.labels(state=state)._value.get()


async def test_a_worker_stuck_on_its_batch_is_stalled_and_its_items_move() -> None:
    pool, writers = ready_pool()
    fut = pool.submit("issue", ["a", "b"], None)
    assert len(writers[0].batches) == 1 and len(writers[1].batches) == 1  # one item each
    stuck = writers[0].batches[0]
    # worker 0's heartbeat thread still beats, but its batch has run for 5 s
    pool._on_message(pool.slots[0], pool.slots[0].generation, Heartbeat(5.0))
    pool._check_stall(pool.slots[0], time.monotonic())
    assert pool.slots[0].stalled and gauge(pool, "stalled") == 1 and gauge(pool, "ready") == 1
    assert pool.health()["status"] == "degraded"
    assert pool.health()["workers"][0]["state"] == "stalled"
    # its item goes to worker 1 once that has room
    answer(pool, 1, writers[1].batches[0], {"der": b"B"})
    assert len(writers[1].batches) == 2 and writers[1].batches[1]["items"] == stuck["items"]
    answer(pool, 1, writers[1].batches[1], {"der": b"A from worker 1"})
    assert fut.done() and [r.der for r in fut.result()] == [b"A from worker 1", b"B"]
    # the stuck worker answers late, with an error: the caller's answer stands, no second one
    answer(pool, 0, stuck, {"error": "token_unavailable", "message": "late"})
    assert fut.result()[0] == Outcome(der=b"A from worker 1")
    # a heartbeat with its batch done makes it ready again; it was never killed
    pool._on_message(pool.slots[0], pool.slots[0].generation, Heartbeat(0.0))
    assert not pool.slots[0].stalled and gauge(pool, "stalled") == 0
    assert not pool.slots[0].process.killed  # type: ignore[union-attr]


async def test_a_silent_worker_is_stalled_and_a_late_certificate_still_counts() -> None:
    pool, writers = ready_pool(heartbeat_timeout=1.0)
    pool.pipeline_depth = 2
    fut = pool.submit("issue", ["a", "b"], None)
    batches = [b for w in writers for b in w.batches]
    assert len(batches) == 2
    silent = pool.slots[0]
    first = writers[0].batches[0]
    silent.last_seen = time.monotonic() - 1.5  # SIGSTOP: not even a heartbeat
    pool._check_stall(silent, time.monotonic())
    assert silent.stalled and not silent.inflight
    moved = writers[1].batches[-1]
    assert moved["items"] == first["items"]
    # the frozen worker resumes and answers first: its certificate is the answer
    answer(pool, 0, first, {"der": b"A from worker 0"})
    answer(pool, 1, writers[1].batches[0], {"der": b"B"})
    answer(pool, 1, moved, {"der": b"A from worker 1"})
    assert [r.der for r in fut.result()] == [b"A from worker 0", b"B"]


async def test_items_of_a_dead_worker_are_retried_once_on_a_ready_one() -> None:
    pool, writers = ready_pool()
    pool._respawn = lambda slot: None  # type: ignore[method-assign]
    fut = pool.submit("issue", ["a", "b"], None)
    dead = pool.slots[0]
    pool._on_exit(dead, dead.generation)
    answer(pool, 1, writers[1].batches[0], {"der": b"B"})
    retried = writers[1].batches[1]
    assert retried["items"] == writers[0].batches[0]["items"]
    answer(pool, 1, retried, {"der": b"A"})
    assert [r.der for r in fut.result()] == [b"A", b"B"]
