"""Consecutive-failure counting and locking, shared by subscriber accounts and RA officers,
and the failure counters of names that do not exist.

Both tables carry ``failed_attempts`` and ``locked_at``; the rule is the same (lock on the Nth
consecutive failure, a success resets the count), only the threshold differs. The password is
verified with no row lock held (Argon2 is slow), so every change here is one atomic statement
on the row's current version: two failures recorded at once count two, and exactly one of
them is the one that locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

Table = Literal["accounts", "ra_officers"]
_TABLES: frozenset[str] = frozenset({"accounts", "ra_officers"})
UnknownTable = Literal["unknown_login_failures", "unknown_officer_failures"]
# table -> its name column; names go into SQL text: only these, ever
_UNKNOWN: dict[str, str] = {
    "unknown_login_failures": "account",
    "unknown_officer_failures": "login",
}


def _table(table: Table) -> str:
    if table not in _TABLES:  # the name goes into SQL text: only these two, ever
        raise ValueError(f"no lockout columns on {table!r}")
    return table


def _unknown(table: UnknownTable) -> tuple[str, str]:
    if table not in _UNKNOWN:
        raise ValueError(f"no unknown-name counters in {table!r}")
    return table, _UNKNOWN[table]


@dataclass(frozen=True)
class Failure:
    failures: int  # consecutive failures after this one
    locked: bool  # locked after this failure (now or before)
    locked_now: bool  # this failure locked it


async def record_failure(
    conn: asyncpg.Connection, table: Table, row_id: int, *, lock_at: int, now: datetime
) -> Failure:
    """Count a failed login; lock at ``lock_at`` failures.

    The CTE locks the row first and reads ``locked_at`` as it is when this statement gets the
    row (after any concurrent failure committed), so ``locked_now`` is true for exactly one
    of several failures recorded at once."""
    t = _table(table)
    r = await conn.fetchrow(
        f"""WITH prev AS (SELECT id, locked_at FROM {t} WHERE id = $1 FOR UPDATE)
            UPDATE {t} x SET failed_attempts = x.failed_attempts + 1,
                   locked_at = CASE WHEN x.locked_at IS NULL AND x.failed_attempts + 1 >= $2
                                    THEN $3 ELSE x.locked_at END
            FROM prev WHERE x.id = prev.id
            RETURNING x.failed_attempts, x.locked_at IS NOT NULL AS locked,
                      (prev.locked_at IS NULL AND x.locked_at IS NOT NULL) AS locked_now""",  # noqa: S608
        row_id,
        lock_at,
        now,
    )
    if r is None:  # the row went away between loading and recording
        return Failure(0, False, False)
    return Failure(r["failed_attempts"], bool(r["locked"]), bool(r["locked_now"]))


async def record_success(
    conn: asyncpg.Connection, table: Table, row_id: int, *, password_hash: str
) -> bool:
    """Reset the count after a verified password, if the row still has that password and is
    not locked (either may have changed while Argon2 ran). False: treat it as a failure."""
    r = await conn.fetchval(
        f"""UPDATE {_table(table)} SET failed_attempts = 0
            WHERE id = $1 AND locked_at IS NULL AND password_hash = $2
            RETURNING id""",  # noqa: S608
        row_id,
        password_hash,
    )
    return r is not None


async def record_unknown_failure(
    conn: asyncpg.Connection, table: UnknownTable, name: str, *, now: datetime
) -> int:
    """Count a failed login for a name that does not exist; the count after it."""
    t, col = _unknown(table)
    return await conn.fetchval(
        f"""INSERT INTO {t} ({col}, failed_attempts, last_failed_at) VALUES ($1, 1, $2)
           ON CONFLICT ({col}) DO UPDATE
              SET failed_attempts = {t}.failed_attempts + 1,
                  last_failed_at = EXCLUDED.last_failed_at
           RETURNING failed_attempts""",  # noqa: S608
        name,
        now,
    )


async def forget_unknown(conn: asyncpg.Connection, table: UnknownTable, name: str) -> None:
    """A name that failed logins before it existed starts clean."""
    t, col = _unknown(table)
    await conn.execute(f"DELETE FROM {t} WHERE {col} = $1", name)  # noqa: S608


async def purge_unknown(
    conn: asyncpg.Connection | asyncpg.Pool,
    table: UnknownTable,
    *,
    failed_before: datetime,
    keep: int,
) -> int:
    """Delete counters whose last failure is older than ``failed_before``, then all but the
    ``keep`` most recent: the table stays bounded whatever a flood of names does."""
    t, col = _unknown(table)
    old = await conn.execute(
        f"DELETE FROM {t} WHERE last_failed_at < $1",  # noqa: S608
        failed_before,
    )
    over = await conn.execute(
        f"""DELETE FROM {t} WHERE {col} IN (
                SELECT {col} FROM {t} ORDER BY last_failed_at DESC, {col} OFFSET $1)""",  # noqa: S608
        keep,
    )
    return int(old.split()[-1]) + int(over.split()[-1])


async def count_unknown(conn: asyncpg.Connection | asyncpg.Pool, table: UnknownTable) -> int:
    t, _ = _unknown(table)
    return await conn.fetchval(f"SELECT count(*) FROM {t}")  # noqa: S608
