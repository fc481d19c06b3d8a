"""Group commit: many concurrent requests' writes in one transaction.

``Batcher(flush).submit(item)`` returns when ``flush`` has handled the item. ``flush`` gets a
list of items and returns one result per item, in order; a result that is an exception is
raised to that item's caller alone (e.g. a 409 for one application of the batch). Batches are
adaptive, like the signer client's: a batch goes out at once when no flush is in flight (after
the current loop iteration, so that requests arriving together share it), otherwise when the
running flush finishes, or when ``max_items`` are waiting; with ``max_wait`` > 0 a lone item
waits up to that long for company. If ``flush`` raises for a whole batch (a transaction
aborted by one bad item, a lost connection), each item is tried again alone, so one item's
failure never fails the others.

This is per-request work in flight inside one process, not shared state: another gateway
instance has its own batcher and the database serialises them as it did single requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("db.batch")

Flush = Callable[[list[T]], Awaitable[list["R | BaseException"]]]


class Batcher(Generic[T, R]):
    def __init__(self, flush: Flush, *, max_items: int = 64, max_wait: float = 0.0,
                 max_inflight: int = 1, name: str = "batch") -> None:
        self._flush_fn = flush
        self.max_items = max_items
        self.max_wait = max_wait
        self.max_inflight = max_inflight
        self.name = name
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._inflight = 0
        self._timer: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, fut))
        if len(self._waiting) >= self.max_items:
            self._maybe_start()
        elif self._timer is None and self._inflight < self.max_inflight:
            # let the requests of this loop iteration join; a lone one waits up to max_wait
            self._timer = (loop.call_later(self.max_wait, self._on_timer) if self.max_wait > 0
                           else loop.call_soon(self._on_timer))
        return await fut

    def _on_timer(self) -> None:
        self._timer = None
        self._maybe_start()

    def _maybe_start(self) -> None:
        while self._waiting and self._inflight < self.max_inflight:
            batch, self._waiting = (self._waiting[: self.max_items],
                                    self._waiting[self.max_items :])
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._timer is not None and (not self._waiting or self._inflight >= self.max_inflight):
            self._timer.cancel()
            self._timer = None

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            self.batches += 1
            self.items += len(batch)
            await self._deliver(batch)
        finally:
            self._inflight -= 1
            self._maybe_start()  # whatever queued up meanwhile goes out now, as one batch

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._flush_fn(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: flush answered {len(results)} results "
                                   f"for {len(items)} items")
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.warning("%s of %d items failed (%s); retrying them one by one",
                        self.name, len(batch), exc)
            for one in batch:
                await self._deliver([one])
            return
        except BaseException as exc:  # cancelled: never leave a caller waiting
            for _, fut in batch:
                _settle(fut, exc)
            raise
        for (_, fut), res in zip(batch, results, strict=True):
            _settle(fut, res)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._maybe_start_all()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task

    def _maybe_start_all(self) -> None:
        saved, self.max_inflight = self.max_inflight, 1 << 30
        try:
            self._maybe_start()
        finally:
            self.max_inflight = saved


def _settle(fut: asyncio.Future, result: object) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)
