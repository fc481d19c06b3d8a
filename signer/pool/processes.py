"""Worker processes: started (staggered: SoftHSM rewrites token files at login), read on the
event loop, told to stop, and replaced when they exit.

Workers heartbeat (``signer/worker.py``; stalls are ``health.py``'s). A worker that dies has its
in-flight items retried once on a ready worker; with none ready (or on a second death) they
fail with ``worker_failed`` (retryable: the client tries the next signer). Dead workers are
replaced with backoff.

What workers say is handled here too: heartbeats (a stalled worker that beats again is ready
again), state changes (ready, healing, failed) and answers, which settle their items exactly
once and feed the metrics and the measured per-item cost that admission estimates with.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from signer.codec import FROM_WORKER, Answer, Batch, Heartbeat, State, Stop, framed, read_payload
from signer.errors import ErrorKind
from signer.pool.records import PoolState, WorkerSlot
from signer.pool.records import refusal as _err
from signer.worker import worker_main

log = logging.getLogger("signer.pool")


class Processes(PoolState):
    """The worker processes and the messages they send."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for slot in self.slots:
            self._spawn(slot, delay_index=slot.index)
        self._update_gauges()
        self._watchdog = asyncio.create_task(self._watch())

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
