"""The asyncpg pool: JSON codecs, a bounded size and bounded waits; nothing else holds
connections."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Nothing beyond what the pool always does (roll back an open transaction).

    asyncpg's default reset runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: a round trip per ``acquire()`` that nothing here needs. The
    service keeps no session state on a connection: no ``SET``, no ``LISTEN``, no cursors outside
    a transaction, and the two session advisory locks (migrations, OCSP pre-signing job) are
    released explicitly in ``finally``.
    """


ACQUIRE_TIMEOUT = 5.0  # seconds a caller may wait for a connection before giving up
CONNECT_TIMEOUT = 5.0  # seconds to open a new connection (asyncpg's default is 60)


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose ``acquire()`` always has a timeout.

    asyncpg waits forever by default; with every connection stuck (a database that stopped
    answering, a lock held too long) each request would queue without bound. A bounded wait
    turns that into a ``TimeoutError`` that the gateway answers as a retryable 503. The
    pool's own ``fetch``/``execute``/... helpers go through ``acquire()`` too.
    """

    acquire_timeout: float = ACQUIRE_TIMEOUT

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float = ACQUIRE_TIMEOUT,
    **kwargs: Any,
) -> asyncpg.Pool:
    kwargs.setdefault("timeout", CONNECT_TIMEOUT)
    pool = BoundedPool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        connect=None,
        setup=None,
        init=_init_connection,
        reset=_reset_connection,
        loop=None,
        command_timeout=30,
        **kwargs,
    )
    pool.acquire_timeout = acquire_timeout
    await pool
    return pool


async def connect(dsn: str, *, password: str | None = None) -> asyncpg.Connection:
    """One connection; ``password`` (from a secret file) is kept out of the DSN."""
    conn = await asyncpg.connect(dsn, command_timeout=60, password=password)
    await _init_connection(conn)
    return conn
