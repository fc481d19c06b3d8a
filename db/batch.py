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

A lost connection can hide a commit: the transaction may have committed before the answer was
lost. With ``check``, a failed batch is looked up before anything is retried: ``check`` gets
the items and returns, per item, its result if the failed attempt took effect (e.g. the rows
it wrote) or None. Items it finds done are answered with that result; only the others are
retried (a lone item too, once). If the check itself fails (the database is still away), every
item gets the original error, which callers answer as retryable: the client's retry then meets
whatever did commit, never a second copy of it.

This is per-request work in flight inside one process, not shared state: another gateway
instance has its own batcher and the database serialises them as it did single requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("db.batch")
WARN_EVERY = 10.0  # seconds: while the database is away every batch fails; warn once a while

Flush = Callable[[list[T]], Awaitable[list["R | BaseException"]]]
Check = Callable[[list[T]], Awaitable[list["R | None"]]]


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Flush,
        *,
        max_items: int = 64,
        max_wait: float = 0.0,
        max_inflight: int = 1,
        name: str = "batch",
        check: Check | None = None,
    ) -> None:
        self._flush_fn = flush
        self._check_fn = check
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
        self._warned_at = -WARN_EVERY

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, fut))
        if len(self._waiting) >= self.max_items:
            self._maybe_start()
        elif self._timer is None and self._inflight < self.max_inflight:
            # let the requests of this loop iteration join; a lone one waits up to max_wait
            self._timer = (
                loop.call_later(self.max_wait, self._on_timer)
                if self.max_wait > 0
                else loop.call_soon(self._on_timer)
            )
        return await fut

    def _on_timer(self) -> None:
        self._timer = None
        self._maybe_start()

    def _maybe_start(self) -> None:
        while self._waiting and self._inflight < self.max_inflight:
            batch, self._waiting = (
                self._waiting[: self.max_items],
                self._waiting[self.max_items :],
            )
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

    async def _deliver(
        self, batch: list[tuple[T, asyncio.Future[R]]], *, retried: bool = False
    ) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._flush_fn(items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"{self.name}: flush answered {len(results)} results for {len(items)} items"
                )
        except Exception as exc:
            batch = await self._unresolved(batch, exc)
            if not batch:
                return
            if retried or (len(batch) == 1 and self._check_fn is None):
                for _, fut in batch:
                    _settle(fut, exc)
                return
            now = time.monotonic()
            level = logging.WARNING if now - self._warned_at >= WARN_EVERY else logging.DEBUG
            if level == logging.WARNING:
                self._warned_at = now
            log.log(
                level,
                "%s of %d items failed (%s); retrying them one by one",
                self.name,
                len(batch),
                exc,
            )
            for one in batch:
                await self._deliver([one], retried=True)
            return
        except BaseException as exc:  # cancelled: never leave a caller waiting
            for _, fut in batch:
                _settle(fut, exc)
            raise
        for (_, fut), res in zip(batch, results, strict=True):
            _settle(fut, res)

    async def _unresolved(
        self, batch: list[tuple[T, asyncio.Future[R]]], exc: Exception
    ) -> list[tuple[T, asyncio.Future[R]]]:
        """After a failed flush: answer the items whose effect ``check`` finds committed and
        return the others. Without ``check`` all are unresolved; if the check fails, every
        item gets ``exc`` and none is left to retry."""
        if self._check_fn is None:
            return batch
        try:
            found = await self._check_fn([item for item, _ in batch])
            if len(found) != len(batch):
                raise RuntimeError(
                    f"{self.name}: check answered {len(found)} results for {len(batch)} items"
                )
        except Exception:
            for _, fut in batch:
                _settle(fut, exc)
            return []
        left = []
        for (item, fut), res in zip(batch, found, strict=True):
            if res is None:
                left.append((item, fut))
            else:
                _settle(fut, res)
        return left

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
