"""Whether the workers are well: stalls noticed and acted on, worker-state gauges, health.

A ready worker that has sent nothing for ``heartbeat_timeout`` seconds (a frozen process), or
whose current batch has run that long plus four times its expected cost (stuck in the token),
is *stalled*: it is reported
(``ca_signer_workers{state="stalled"}``, health ``degraded``), gets no new batches, and its
in-flight items go back to the head of the queue for a ready worker; whichever answer for an
item comes first is the one the caller gets (a duplicate signature of the same TBS is harmless),
so each item is answered exactly once. A worker that heartbeats again is ready again; one that
stays stalled for ``stall_seconds`` is killed and replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from signer.pool.records import PoolState, WorkerSlot

log = logging.getLogger("signer.pool")


class Health(PoolState):
    """Stall detection, the worker-state gauges and the health body."""

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
