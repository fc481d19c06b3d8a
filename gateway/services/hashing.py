"""Where Argon2 runs: a fixed number of threads and a bounded queue in front of them.

An Argon2id verification costs tens of milliseconds of CPU and 64 MiB. Run in
``asyncio.to_thread`` (a pool of ``cpu_count + 4`` threads with an unbounded queue), a flood of
logins queues verifications without limit: every login waits for all that came before it,
memory grows, and the event loop's own work competes with more hashing threads than there are
cores. Here at most ``workers`` (about the number of cores) run at once and at most ``queue``
wait; a verification beyond that is refused at once with 503 ``busy`` and ``Retry-After``, so
an attacker can take the login capacity but never the rest of the site (sessions, listing
certificates) nor the database pool: no connection is held while a hash is computed.

The hashing threads also run at a lower CPU priority (``nice`` +10 on Linux, per thread; the
threads libargon2 starts for its lanes inherit it): with every core busy hashing, the event
loop, which answers every other request, still gets the CPU first. Without that, a login
flood on two cores starves the loop and every page waits behind the flood's requests.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from gateway.errors import ApiError, Kind

T = TypeVar("T")
BUSY_RETRY_AFTER = 1  # seconds; a queue slot frees every few tens of milliseconds
NICE = 10  # added to the hashing threads' nice value


def _lower_priority() -> None:
    """Thread initializer: on Linux, nice applies to the calling thread only."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def default_workers() -> int:
    """About one per core: Argon2 is CPU-bound (and each runs its lanes in threads of its own)."""
    return max(1, os.cpu_count() or 1)


class HashingExecutor:
    def __init__(
        self, *, workers: int, queue: int, on_change: Callable[[int], None] | None = None
    ) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("workers must be at least 1 and queue at least 0")
        self.workers = workers
        self.queue = queue
        self.refused = 0  # verifications answered ``busy``
        self.completed = 0
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._lock = threading.Lock()
        self._in_flight = 0  # running + waiting; decremented when the thread is done
        self._on_change = on_change

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def full(self) -> bool:
        return self._in_flight >= self.workers + self.queue

    def busy_error(self) -> ApiError:
        return ApiError(
            Kind.BUSY,
            "the server is busy; try again shortly",
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        )

    def check(self) -> None:
        """Refuse at once when bounded work would be refused: a login checks this before it
        costs anything (a rate-limit or account round trip to the database)."""
        if self.full:
            with self._lock:
                self.refused += 1
            raise self.busy_error()

    def _admit(self, bounded: bool) -> bool:
        with self._lock:
            if bounded and self.full:
                self.refused += 1
                return False
            self._in_flight += 1
            n = self._in_flight
        if self._on_change is not None:
            self._on_change(n)
        return True

    def _done(self, _future: Future[object]) -> None:
        # runs in the worker thread (or at once, if cancelled before it started); the slot
        # is free only when the hash is really finished, not when a waiting request gave up
        with self._lock:
            self._in_flight -= 1
            self.completed += 1
            n = self._in_flight
        if self._on_change is not None:
            self._on_change(n)

    async def run(self, fn: Callable[[], T], *, bounded: bool = True) -> T:
        """Run ``fn`` in a hashing thread. ``bounded`` work (logins, old-password checks) is
        refused with ``busy`` when the queue is full; unbounded work (hashing a new password
        for a registration or a reset, which an anonymous client cannot trigger) waits."""
        if not self._admit(bounded):
            raise ApiError(
                Kind.BUSY,
                "the server is busy; try again shortly",
                headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            )
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._done(Future())
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
