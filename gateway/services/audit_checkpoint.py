"""Signed audit checkpoints, asked for by the gateway: it reads the chain's head (the signer
has no database access), the signer signs it with its audit key, the gateway stores it.

Every ``[gateway] audit_checkpoint_seconds`` (default 300; 0 switches it off) and once more at
a clean shutdown. The signer refuses a head lower than the last one it signed and keeps its own
file of what it signed, so a gateway that lies here gains nothing: it can only fail to ask.
Several gateways may run this; each asks for the head it sees, and the signer keeps the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from db import checkpoints
from gateway import keys
from signer.checkpoints import SignedCheckpoint
from signer.client import SignerOps
from signer.errors import SignerError

log = logging.getLogger("gateway.audit_checkpoint")
SHUTDOWN_SECONDS = 5.0  # the last checkpoint may not hold up a stop for longer


def _now() -> datetime:
    return datetime.now(UTC)


async def take(
    pool: asyncpg.Pool, signer: SignerOps, now: Callable[[], datetime] = _now
) -> SignedCheckpoint:
    """Read the head, have it signed, store it; raises ``SignerError`` when refused."""
    async with pool.acquire() as conn:
        request = await checkpoints.head(conn, now())
    blob = await signer.sign_checkpoint(request)
    signed = SignedCheckpoint.from_result(request, blob)
    async with pool.acquire() as conn:
        await checkpoints.store(conn, signed)
    return signed


async def _take_logged(pool: asyncpg.Pool, signer: SignerOps) -> None:
    try:
        signed = await take(pool, signer)
        log.info(
            "audit checkpoint stored",
            extra={"last_id": signed.request.last_id, "count": signed.request.count},
        )
    except SignerError as exc:
        log.warning("audit checkpoint not signed: %s (%s)", exc.message, exc.kind.value)
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("audit checkpoint failed: %s", exc)


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """The periodic task, and the last checkpoint when the gateway stops."""
    config, rt = app[keys.CONFIG], app[keys.RUNTIME]
    interval = config.audit_checkpoint_seconds
    if interval <= 0 or not hasattr(rt.signer, "sign_checkpoint"):
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            await _take_logged(rt.db, rt.signer)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_take_logged(rt.db, rt.signer), SHUTDOWN_SECONDS)
