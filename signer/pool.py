"""The worker pool: one queue for items from every connection, batches handed to processes.

Items from all RPC connections go into one queue. Whenever a worker has room (it may hold
``pipeline_depth`` batches, so it never waits for the next one), the pool cuts a batch from the
head of the queue: as many items as are waiting, shared fairly among the workers with room, at
most ``batch_max``. No timer is needed: while every worker is busy the queue fills, and the next
batch takes what has gathered, so batches grow exactly when load does.

Background work (OCSP pre-signing) comes marked ``bulk`` and waits in a queue of its own: a batch
is cut from it only when no interactive item is waiting, and at most ``bulk_batch_max`` items,
so an applicant who arrives behind a pre-signing run waits for a few signatures, not hundreds.

Admission is bounded: a request that would overflow its queue, or that cannot be finished before
its deadline at the measured per-item cost, is refused at once with ``overloaded``.

Faults. Workers heartbeat (``signer/worker.py``). A ready worker that has sent nothing for
``heartbeat_timeout`` seconds (a frozen process), or whose current batch has run that long plus
four times its expected cost (stuck in the token), is *stalled*: it is reported
(``ca_signer_workers{state="stalled"}``, health ``degraded``), gets no new batches, and its
in-flight items go back to the head of the queue for a ready worker; whichever answer for an
item comes first is the one the caller gets (a duplicate signature of the same TBS is harmless),
so each item is answered exactly once. A worker that heartbeats again is ready again; one that
stays stalled for ``stall_seconds`` is killed and replaced. A worker that dies has its in-flight
items retried once on a ready worker; with none ready (or on a second death) they fail with
``worker_failed`` (retryable: the client tries the next signer). Dead workers are replaced with
backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing as mp
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from signer.codec import FROM_WORKER, Answer, Batch, Heartbeat, State, Stop, framed, read_payload
from signer.errors import ErrorKind
from signer.metrics import SignerMetrics
from signer.protocol import Outcome
from signer.worker import worker_main

log = logging.getLogger("signer.pool")

_err = Outcome.refused


@dataclass
class Job:
    """One RPC request: its items, where the results go, and when it must be done."""

    op: str
    items: list[Any]
    deadline: float | None
    future: asyncio.Future[list[Outcome]]
    results: list[Outcome | None] = field(default_factory=list)
    remaining: int = 0
    bulk: bool = False
    retried: set[int] = field(default_factory=set)  # items already re-run after a worker died

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.remaining = len(self.items)

    def settle(self, index: int, result: Outcome) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if self.remaining == 0 and not self.future.done():
                self.future.set_result(self.results)  # type: ignore[arg-type]


@dataclass
class Sent:
    """A batch on its way to (or at) a worker: which job's item each of its items is."""

    id: int
    parts: list[tuple[Job, int]]
    sent_at: float


@dataclass
class WorkerSlot:
    index: int
    process: Any = None
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.Task[None] | None = None
    state: str = "starting"
    detail: str = ""
    pid: int | None = None
    inflight: dict[int, Sent] = field(default_factory=dict)
    restarts: int = 0
    started_at: float = 0.0
    generation: int = 0
    last_seen: float = 0.0  # monotonic time of the worker's last message
    busy: float = 0.0  # how long its current batch had run, at its last heartbeat
    stalled_since: float | None = None
    # batches whose items were moved to other workers while this one stalled: a late answer
    # still counts if it comes first
    moved: dict[int, Sent] = field(default_factory=dict)

    @property
    def stalled(self) -> bool:
        return self.stalled_since is not None

    @property
    def public_state(self) -> str:
        return "stalled" if self.stalled else self.state

    @property
    def inflight_items(self) -> int:
        return sum(len(b.parts) for b in self.inflight.values())


class WorkerPool:
    def __init__(
        self,
        config_path: str,
        workers: int,
        metrics: SignerMetrics,
        *,
        batch_max: int = 64,
        bulk_batch_max: int = 16,
        max_queue: int = 8192,
        pipeline_depth: int = 2,
        stagger: float = 0.25,
        stall_seconds: float = 30.0,
        heartbeat_timeout: float = 2.0,
    ) -> None:
        self.config_path = config_path
        self.metrics = metrics
        self.batch_max = batch_max
        self.bulk_batch_max = bulk_batch_max
        self.max_queue = max_queue
        self.pipeline_depth = pipeline_depth
        self.stagger = stagger
        self.stall_seconds = stall_seconds
        self.heartbeat_timeout = heartbeat_timeout
        self._watchdog: asyncio.Task[None] | None = None
        self.slots = [WorkerSlot(i) for i in range(workers)]
        self.queue: deque[tuple[Job, int]] = deque()
        self.bulk: deque[tuple[Job, int]] = deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._batch_ids = 0
        self._ctx = mp.get_context("spawn")
        self._closing = False
        self._item_cost: dict[str, float] = {"issue": 0.002, "crl": 0.05, "ocsp": 0.0005}
        self._ready_event = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for slot in self.slots:
            self._spawn(slot, delay_index=slot.index)
        self._update_gauges()
        self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Notice stalled workers within ``heartbeat_timeout``; kill them after
        ``stall_seconds``.

        A token that stops answering (a hung network HSM) blocks the worker inside C_Sign,
        where it cannot answer anything; a frozen process does not even heartbeat. Its items
        move to a ready worker at once (``_check_stall``); if it stays stuck, killing it makes
        a fresh process (a fresh module context) take its place.
        """
        while not self._closing:
            await asyncio.sleep(min(0.25, self.heartbeat_timeout / 4, self.stall_seconds / 4))
            now = time.monotonic()
            for slot in self.slots:
                self._check_stall(slot, now)
                oldest = min((b.sent_at for b in slot.inflight.values()), default=now)
                stuck = max(now - oldest, now - (slot.stalled_since or now))
                if stuck > self.stall_seconds and slot.process is not None:
                    log.error(
                        "worker %d stalled for %.0fs on the token; replacing it",
                        slot.index,
                        stuck,
                    )
                    self.metrics.errors.labels(kind="worker_stalled").inc()
                    slot.process.kill()
                    slot.stalled_since = None  # counted once; its exit does the rest

    def _expected_seconds(self, slot: WorkerSlot) -> float:
        """What the batches a worker holds should cost at the measured per-item rates."""
        return sum(
            sum(self._item_cost.get(job.op, 0.002) for job, _ in b.parts)
            for b in slot.inflight.values()
        )

    def _check_stall(self, slot: WorkerSlot, now: float) -> None:
        if slot.state != "ready" or slot.process is None:
            return
        silent = now - slot.last_seen
        if not slot.stalled:
            allowance = self.heartbeat_timeout + 4 * self._expected_seconds(slot)
            if silent <= self.heartbeat_timeout and slot.busy + silent <= allowance:
                return
            slot.stalled_since = now
            log.warning(
                "worker %d (pid %s) stalled: silent %.1fs, on its batch %.1fs; moving its %d "
                "items to a ready worker",
                slot.index,
                slot.pid,
                silent,
                slot.busy,
                slot.inflight_items,
            )
            self._update_gauges()
        self._move_items(slot)

    def _move_items(self, slot: WorkerSlot) -> None:
        """The stalled worker's in-flight items go back to the head of their queue, for a
        ready worker; its late answers still count if they come first (``_on_message``)."""
        if not slot.inflight or self.ready_workers() == 0:
            return
        moved = 0
        for batch in sorted(slot.inflight.values(), key=lambda b: b.id, reverse=True):
            open_parts = [(job, i) for job, i in batch.parts if job.results[i] is None]
            for job, i in reversed(open_parts):
                (self.bulk if job.bulk else self.queue).appendleft((job, i))
            moved += len(open_parts)
            slot.moved[batch.id] = batch
        slot.inflight.clear()
        if moved:
            log.warning("worker %d stalled: %d items moved to the queue's head", slot.index, moved)
        self._dispatch()

    async def wait_ready(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._ready_event.wait(), seconds)
            return True
        except TimeoutError:
            return False

    def _spawn(self, slot: WorkerSlot, delay_index: int = 0) -> None:
        parent, child = socket.socketpair()
        proc = self._ctx.Process(
            target=worker_main,
            args=(self.config_path, delay_index, child, self.stagger),
            name=f"ca-signer-worker-{slot.index}",
            daemon=True,
        )
        proc.start()
        child.close()
        slot.process, slot.writer, slot.state, slot.pid = proc, None, "starting", proc.pid
        slot.started_at = slot.last_seen = time.monotonic()
        slot.stalled_since, slot.busy = None, 0.0
        slot.moved.clear()
        slot.generation += 1
        slot.reader = asyncio.create_task(self._read_worker(slot, parent, slot.generation))

    async def _read_worker(self, slot: WorkerSlot, sock: socket.socket, gen: int) -> None:
        """Messages from one worker, read on the event loop (a reader thread per worker cost
        a GIL hand-over and a loop wake-up per message); the end of the stream is its exit."""
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            if gen == slot.generation:
                slot.writer = writer
            while True:
                self._on_message(slot, gen, FROM_WORKER.decode(await read_payload(reader)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            # a message this pool cannot handle: the worker is replaced rather than trusted
            log.exception("worker %d: unreadable message; replacing it", slot.index)
            if gen == slot.generation and slot.process is not None:
                slot.process.kill()
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()
            self._on_exit(slot, gen)

    def _write(self, slot: WorkerSlot, msg: Batch | Stop) -> None:
        if slot.writer is None or slot.writer.is_closing():
            return
        slot.writer.write(framed(msg))

    async def stop(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for slot in self.slots:
            self._write(slot, Stop())
        deadline = time.monotonic() + 3
        for slot in self.slots:
            if slot.process is not None:
                await asyncio.to_thread(slot.process.join, max(0.1, deadline - time.monotonic()))
                if slot.process.is_alive():
                    slot.process.kill()
        self._fail_queue(ErrorKind.UNAVAILABLE, "signer shutting down")

    # -- events from workers --------------------------------------------------------------------
    def _on_message(self, slot: WorkerSlot, gen: int, msg: Heartbeat | State | Answer) -> None:
        if gen != slot.generation:
            return
        slot.last_seen = time.monotonic()
        if isinstance(msg, Heartbeat):
            slot.busy = msg.busy
        if slot.stalled_since is not None and slot.busy <= self.heartbeat_timeout:
            stalled_for = slot.last_seen - slot.stalled_since
            log.info("worker %d answers again after a %.1fs stall", slot.index, stalled_for)
            slot.stalled_since = None
            self._update_gauges()
            self._dispatch()
        if isinstance(msg, Heartbeat):
            return
        if isinstance(msg, State):
            previous = slot.state
            slot.state, slot.detail = msg.state, msg.detail
            if slot.state == "ready":
                self._ready_event.set()
                if previous == "healing":
                    log.info("worker %d healed: token ready again", slot.index)
            elif slot.state == "healing" and previous != "healing":
                self.metrics.token_faults.inc()
                log.warning("worker %d healing: %s", slot.index, slot.detail)
            elif slot.state == "failed":
                log.error("worker %d cannot serve: %s", slot.index, slot.detail)
            self._update_gauges()
            self._dispatch()
        else:
            slot.busy = 0.0
            batch = slot.inflight.pop(msg.id, None)
            if batch is None:
                late = slot.moved.pop(msg.id, None)
                if late is not None:  # its items were moved: only a certificate is news
                    for (job, index), result in zip(late.parts, msg.results, strict=False):
                        if result.error is None:
                            job.settle(index, result)
                    self._dispatch()
                return
            durations = msg.durations
            ok: dict[str, int] = {}
            for (job, index), result in zip(batch.parts, msg.results, strict=False):
                if result.error is not None:
                    self.metrics.errors.labels(kind=result.error).inc()
                else:
                    ok[job.op] = ok.get(job.op, 0) + 1
                job.settle(index, result)
            for op, count in ok.items():
                self.metrics.signatures.labels(operation=op).inc(count)
            for role, count in msg.key_signatures.items():
                self.metrics.key_signatures.labels(role=role).inc(count)
            for d in durations:
                self.metrics.item_seconds.observe(d)
            if durations:
                op = batch.parts[0][0].op
                avg = sum(durations) / len(durations)
                self._item_cost[op] = 0.8 * self._item_cost.get(op, avg) + 0.2 * avg
            if msg.token_fault:
                # counted here: the worker's own "healing" message then finds the slot
                # already healing, and a fault healed at the first retry sends none at all
                if slot.state != "healing":
                    self.metrics.token_faults.inc()
                    log.warning("worker %d hit a token fault; healing", slot.index)
                slot.state = "healing"
                self._update_gauges()
            self._dispatch()

    def _on_exit(self, slot: WorkerSlot, gen: int) -> None:
        if gen != slot.generation:
            return
        lost = list(slot.inflight.values())
        slot.inflight.clear()
        slot.moved.clear()
        slot.stalled_since, slot.busy = None, 0.0
        failed = slot.state == "failed"
        slot.state, slot.writer = "dead", None
        n = retried = 0
        retry = self.ready_workers() > 0  # retried once, on another worker of this signer
        for batch in sorted(lost, key=lambda b: b.id, reverse=True):
            for job, index in reversed(batch.parts):
                if job.results[index] is not None:
                    continue
                if retry and index not in job.retried:
                    job.retried.add(index)
                    (self.bulk if job.bulk else self.queue).appendleft((job, index))
                    retried += 1
                    continue
                job.settle(index, _err(ErrorKind.WORKER_FAILED, "worker process died mid-batch"))
                n += 1
        if n:
            self.metrics.errors.labels(kind=ErrorKind.WORKER_FAILED.value).inc(n)
        self._update_gauges()
        if self._closing:
            return
        self.metrics.worker_restarts.inc()
        slot.restarts += 1
        # a worker that died young (or refused its configuration) is restarted more slowly
        young = time.monotonic() - slot.started_at < 10
        delay = min(30.0, 0.5 * 2 ** min(slot.restarts, 6)) if young or failed else 0.2
        log.warning(
            "worker %d (pid %s) exited; %d in-flight items retried on another worker, %d "
            "failed; restart in %.1fs",
            slot.index,
            slot.pid,
            retried,
            n,
            delay,
        )
        assert self.loop is not None
        self.loop.call_later(delay, self._respawn, slot)
        self._dispatch()

    def _respawn(self, slot: WorkerSlot) -> None:
        if not self._closing and slot.state == "dead":
            self._spawn(slot)
            self._update_gauges()

    # -- admission and dispatch -------------------------------------------------------------------
    def ready_workers(self) -> int:
        return sum(1 for s in self.slots if s.state == "ready" and not s.stalled)

    def submit(
        self, op: str, items: list[Any], deadline: float | None, *, bulk: bool = False
    ) -> asyncio.Future[Any]:
        """Queue a request's items; the future yields one result dict per item."""
        assert self.loop is not None
        fut: asyncio.Future[Any] = self.loop.create_future()
        job = Job(op, items, deadline, fut, bulk=bulk)
        if not items:
            fut.set_result([])
            return fut
        ready = self.ready_workers()
        queue = self.bulk if bulk else self.queue
        refusal: Outcome | None = None
        if ready == 0:
            refusal = _err(ErrorKind.TOKEN_UNAVAILABLE, "no worker has the token ready")
        elif len(queue) + len(items) > self.max_queue:
            refusal = _err(ErrorKind.OVERLOADED, "signer queue is full")
        elif deadline is not None:
            # interactive items overtake bulk ones, so only bulk items wait for both queues
            ahead = len(self.queue) + (len(self.bulk) if bulk else 0)
            backlog = ahead + sum(s.inflight_items for s in self.slots) + len(items)
            estimate = backlog * self._item_cost.get(op, 0.002) / ready
            if time.time() + estimate > deadline:
                refusal = _err(ErrorKind.OVERLOADED, "cannot finish before the deadline")
        if refusal is not None:
            self.metrics.errors.labels(kind=refusal.error).inc(len(items))
            fut.set_result([refusal] * len(items))
            return fut
        self.metrics.requests.labels(operation=op).inc()
        queue.extend((job, i) for i in range(len(items)))
        self._dispatch()
        return fut

    def _dispatch(self) -> None:
        while self.queue or self.bulk:
            free = [
                s
                for s in self.slots
                if s.state == "ready"
                and not s.stalled
                and s.writer is not None
                and len(s.inflight) < self.pipeline_depth
            ]
            if not free:
                if self.ready_workers() == 0 and all(
                    s.state in ("healing", "dead", "failed") for s in self.slots
                ):
                    # nobody can take work: fail fast instead of letting callers hang
                    self._fail_queue(ErrorKind.TOKEN_UNAVAILABLE, "token unavailable; healing")
                break
            slot = min(free, key=lambda s: (len(s.inflight), s.inflight_items))
            queue, cap = (
                (self.queue, self.batch_max) if self.queue else (self.bulk, self.bulk_batch_max)
            )
            parts = self._cut(queue, min(cap, max(1, math.ceil(len(queue) / len(free)))))
            if parts:
                self._send(slot, parts)
        self.metrics.queue_depth.set(len(self.queue) + len(self.bulk))

    def _cut(self, queue: deque[tuple[Job, int]], size: int) -> list[tuple[Job, int]]:
        """Up to ``size`` items from the head of ``queue``; expired ones are answered instead."""
        parts: list[tuple[Job, int]] = []
        now = time.time()
        while queue and len(parts) < size:
            job, index = queue.popleft()
            if job.deadline is not None and job.deadline < now:
                job.settle(index, _err(ErrorKind.DEADLINE_EXCEEDED, "deadline passed in queue"))
                self.metrics.errors.labels(kind=ErrorKind.DEADLINE_EXCEEDED.value).inc()
                continue
            parts.append((job, index))
        return parts

    def _send(self, slot: WorkerSlot, parts: list[tuple[Job, int]]) -> None:
        self._batch_ids += 1
        batch = Sent(self._batch_ids, parts, time.monotonic())
        slot.inflight[batch.id] = batch
        # a worker that has just died fails the batch through its reader's end of stream
        self._write(slot, Batch(batch.id, [job.items[i] for job, i in parts]))
        self.metrics.batch_size.observe(len(parts))

    def _fail_queue(self, kind: ErrorKind, message: str) -> None:
        n = len(self.queue) + len(self.bulk)
        for queue in (self.queue, self.bulk):
            while queue:
                job, index = queue.popleft()
                job.settle(index, _err(kind, message))
        if n:
            self.metrics.errors.labels(kind=kind.value).inc(n)
        self.metrics.queue_depth.set(0)

    def _update_gauges(self) -> None:
        counts: dict[str, int] = {}
        for s in self.slots:
            counts[s.public_state] = counts.get(s.public_state, 0) + 1
        for state in ("starting", "ready", "stalled", "healing", "dead", "failed"):
            self.metrics.workers.labels(state=state).set(counts.get(state, 0))
        self.metrics.token_up.set(1 if counts.get("ready") else 0)

    def health(self) -> dict[str, Any]:
        ready = self.ready_workers()
        status = "ok" if ready == len(self.slots) else ("degraded" if ready else "down")
        return {
            "status": status,
            "queue": len(self.queue),
            "bulk_queue": len(self.bulk),
            "workers": [
                {
                    "index": s.index,
                    "pid": s.pid,
                    "state": s.public_state,
                    "detail": s.detail,
                    "restarts": s.restarts,
                    "inflight": s.inflight_items,
                }
                for s in self.slots
            ],
        }
