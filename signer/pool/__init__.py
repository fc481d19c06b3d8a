"""The worker pool: one queue for items from every connection, batches handed to processes.

The pool is one object made of its jobs, a module each: ``admission`` (queues, admission,
batches), ``processes`` (starting, reading, replacing workers), ``health`` (stalls, gauges,
health), over the records of ``records``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections import deque

from signer.metrics import SignerMetrics
from signer.pool.admission import Admission
from signer.pool.health import Health
from signer.pool.processes import Processes
from signer.pool.records import Job, Sent, WorkerSlot

__all__ = ["Job", "Sent", "WorkerPool", "WorkerSlot"]


class WorkerPool(Processes, Health, Admission):
    """One queue for items from every connection, batches handed to worker processes."""

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
