"""Items from all RPC connections go into one queue. Whenever a worker has room (it may hold
``pipeline_depth`` batches, so it never waits for the next one), the pool cuts a batch from the
head of the queue: as many items as are waiting, shared fairly among the workers with room, at
most ``batch_max``. No timer is needed: while every worker is busy the queue fills, and the next
batch takes what has gathered, so batches grow exactly when load does.

Background work (OCSP pre-signing) comes marked ``bulk`` and waits in a queue of its own: a batch
is cut from it only when no interactive item is waiting, and at most ``bulk_batch_max`` items,
so an applicant who arrives behind a pre-signing run waits for a few signatures, not hundreds.

Admission is bounded: a request that would overflow its queue, or that cannot be finished before
its deadline at the measured per-item cost, is refused at once with ``overloaded``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Any

from signer.codec import Batch
from signer.errors import ErrorKind
from signer.pool.records import Job, PoolState, Sent, WorkerSlot
from signer.pool.records import refusal as _err
from signer.protocol import Outcome

log = logging.getLogger("signer.pool")


class Admission(PoolState):
    """Admission and scheduling: items in, batches out to the workers with room."""

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
