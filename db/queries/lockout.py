"""Consecutive-failure counting and locking, shared by subscriber accounts and RA officers.

Both tables carry ``failed_attempts`` and ``locked_at``; the rule is the same (lock on the Nth
consecutive failure, a success resets the count), only the threshold differs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg

Table = Literal["accounts", "ra_officers"]
_TABLES: frozenset[str] = frozenset({"accounts", "ra_officers"})


def _table(table: Table) -> str:
    if table not in _TABLES:  # the name goes into SQL text: only these two, ever
        raise ValueError(f"no lockout columns on {table!r}")
    return table


async def record_failure(
    conn: asyncpg.Connection, table: Table, row_id: int, *, lock_at: int, now: datetime
) -> tuple[int, bool]:
    """Count a failed login; lock at ``lock_at`` failures. Returns (failures, locked_now)."""
    r = await conn.fetchrow(
        f"""UPDATE {_table(table)} SET failed_attempts = failed_attempts + 1,
               locked_at = CASE WHEN locked_at IS NULL AND failed_attempts + 1 >= $2
                                THEN $3 ELSE locked_at END
           WHERE id = $1
           RETURNING failed_attempts, (locked_at = $3) AS locked_now""",  # noqa: S608
        row_id, lock_at, now,
    )
    return r["failed_attempts"], bool(r["locked_now"])


async def record_success(conn: asyncpg.Connection, table: Table, row_id: int) -> None:
    await conn.execute(
        f"UPDATE {_table(table)} SET failed_attempts = 0 WHERE id = $1", row_id  # noqa: S608
    )
