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
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from db import checkpoints
from gateway import appkeys
from gateway.periodic import Every, periodic
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


def _plan(app: web.Application) -> Every | None:
    interval, signer = app[appkeys.CONFIG].audit_checkpoint_seconds, app[appkeys.SIGNER]
    if interval <= 0 or not hasattr(signer, "sign_checkpoint"):
        return None
    pool = app[appkeys.DB]

    async def job() -> None:
        await _take_logged(pool, signer)

    async def last() -> None:  # may not hold up a stop for longer than SHUTDOWN_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_take_logged(pool, signer), SHUTDOWN_SECONDS)

    return Every(interval, job, first=interval, last=last)


# cleanup_ctx: the periodic task, and the last checkpoint when the gateway stops
timer = periodic("audit checkpoint", _plan)
