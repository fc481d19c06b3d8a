"""Database outages: which exceptions mean "the database cannot serve now", and one warning each.

A stopped, restarting, read-only or overloaded PostgreSQL is not a bug in the request: the
client should come back shortly (503 ``database_unavailable`` with Retry-After), and the log
should say once that the database is away, not print a traceback per request. Everything else
stays a 500 with its traceback, so a real bug is never hidden as an outage.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import asyncpg
from asyncpg import exceptions as pgx

log = logging.getLogger("gateway.database")
RETRY_AFTER_SECONDS = 2
QUIET_SECONDS = 10.0  # errors closer together than this belong to one outage (one warning)

_ASYNCPG_DIR = str(Path(asyncpg.__file__).resolve().parent)

# server answers that mean "not now": shutting down, starting up, read-only, out of slots
_SERVER_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pgx.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    pgx.AdminShutdownError,  # 57P01: pg_ctl stop, pg_terminate_backend
    pgx.CrashShutdownError,  # 57P02
    pgx.ReadOnlySQLTransactionError,  # 25006: default_transaction_read_only, a hot standby
    pgx.TooManyConnectionsError,  # 53300
    pgx.PostgresConnectionError,  # 08xxx
    pgx.ConnectionDoesNotExistError,  # the connection was lost mid-query
    pgx.ConnectionFailureError,
)


def _from_asyncpg(exc: BaseException) -> bool:
    """Was ``exc`` raised inside asyncpg (a connect, an acquire, a query)? An ``OSError`` or a
    ``TimeoutError`` from anywhere else (a file, the signer) is not a database outage."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(_ASYNCPG_DIR):
            return True
        tb = tb.tb_next
    return False


def outage_reason(exc: BaseException) -> str | None:
    """A short reason when ``exc`` means the database is unavailable for now, else None."""
    if isinstance(exc, _SERVER_UNAVAILABLE):
        return type(exc).__name__
    if isinstance(exc, pgx.InterfaceError) and "closed" in str(exc):
        return "ConnectionClosed"  # used after the server closed it
    if isinstance(exc, (OSError, TimeoutError)) and _from_asyncpg(exc):
        # refused / socket gone while connecting; pool.acquire() or a query timed out
        return type(exc).__name__
    return None


class OutageLog:
    """One warning when an outage begins (the first error after ``QUIET_SECONDS`` without
    one); the errors in between are counted and named in the next warning."""

    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self.last_error = -float("inf")
        self.suppressed = 0

    def record(self, reason: str, where: str) -> None:
        now = time.monotonic()
        if now - self.last_error > self.quiet_seconds:
            log.warning(
                "database unavailable (%s at %s); answering 503 database_unavailable "
                "until it is back (%d more errors in the previous outage)",
                reason,
                where,
                self.suppressed,
                extra={"reason": reason, "suppressed": self.suppressed},
            )
            self.suppressed = 0
        else:
            self.suppressed += 1
        self.last_error = now


outages = OutageLog()
