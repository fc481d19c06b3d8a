"""Background jobs run every so often while the gateway runs: one loop, written once.

Every timer of the gateway (CRL refresh, pending sweep, renewal notices, housekeeping, CMP
purge, OCSP pre-signing, CRL gauges, audit checkpoints, the operator page's sampler) is a
``cleanup_ctx`` made by :func:`periodic`, so each starts with the application, is cancelled and
awaited when it stops, and handles a failed round the same way: a database outage is reported
once per outage (``gateway.dbfaults``), anything else as one warning per round, and the next
round retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway import dbfaults

log = logging.getLogger("gateway.periodic")

Job = Callable[[], Awaitable[object]]
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True)
class Every:
    """A job and its schedule: the first round after ``first`` seconds (0: at once), then
    ``seconds`` after the end of each round; ``last`` runs once more at shutdown."""

    seconds: float
    job: Job
    first: float = 0.0
    last: Job | None = None


async def _round(name: str, job: Job) -> None:
    try:
        await job()
    except Exception as exc:  # keep going; the next round retries
        reason = dbfaults.outage_reason(exc)
        if reason is not None:  # one warning per database outage, not one per round
            dbfaults.outages.record(reason, name)
        else:
            log.warning("%s failed: %s", name, exc)


async def _loop(name: str, every: Every) -> None:
    if every.first > 0:
        await asyncio.sleep(every.first)
    while True:
        await _round(name, every.job)
        await asyncio.sleep(every.seconds)


@contextlib.asynccontextmanager
async def running(name: str, every: Every) -> AsyncIterator[None]:
    """Run ``every`` in a task named ``name`` for the duration of the ``async with``."""
    task = asyncio.create_task(_loop(name, every), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if every.last is not None:
            await _round(name, every.last)


def periodic(name: str, plan: Callable[[web.Application], Every | None]) -> CleanupCtx:
    """A ``cleanup_ctx`` running the job ``plan(app)`` gives at start-up (None: this gateway
    has nothing to do, e.g. the job is switched off), until the application stops."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        every = plan(app)
        if every is None:
            yield
            return
        async with running(name, every):
            yield

    ctx.__qualname__ = f"periodic[{name}]"
    return ctx
