"""The asyncpg pool: JSON codecs and a bounded size; nothing else holds connections."""

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


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
                      ) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_reset_connection,
        command_timeout=30,
        **kwargs,
    )
    assert pool is not None
    return pool


async def connect(dsn: str, *, password: str | None = None) -> asyncpg.Connection:
    """One connection; ``password`` (from a secret file) is kept out of the DSN."""
    conn = await asyncpg.connect(dsn, command_timeout=60, password=password)
    await _init_connection(conn)
    return conn
