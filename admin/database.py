"""Where ``ca-admin`` connects, and its database verbs (``migrate``, ``db-start/stop/url``).

Only ``db-start`` (or any verb with ``--start-db``) starts the embedded cluster: a verb that finds
the database down says so and exits 1, so a stopped database is never restarted behind the
operator's back (someone may have stopped it on purpose).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from config.loader import load, read_secret
from config.sections import DatabaseSection, database_url, embedded_database_dir, parse_section
from db import roles
from db.embedded import Cluster, ensure_running
from db.migrate import migrate
from db.pool import connect

ACTOR = "ca-admin"


class AdminError(Exception):
    """A verb failed; the message is for the operator."""


def _embedded_dir(config: str | None) -> Path | None:
    """The embedded cluster's folder, or None when [database] url / DATABASE_URL is set."""
    if database_url():
        return None
    cfg = load(config)
    return embedded_database_dir(cfg, parse_section(cfg, "database", DatabaseSection))


@dataclass(frozen=True)
class Target:
    """Where ``ca-admin`` connects: as the owner role (it migrates and creates officers)."""

    dsn: str
    password: str | None = None

    def __repr__(self) -> str:
        return f"Target({self.dsn!r})"


def owner_target(config: str | os.PathLike[str] | None, start: bool = False) -> Target:
    """``DATABASE_URL`` as given; else ``[database] url`` or the embedded cluster (started only
    with ``start``, i.e. ``--start-db``; a stopped one is an error that says so), as
    ``[database] owner`` (default ``ca_owner``) with ``owner_password_file`` /
    ``owner_password_env``. Never the gateway's application role: it cannot migrate."""
    env = database_url()
    if env:
        return Target(env)
    cfg = load(config)
    db = parse_section(cfg, "database", DatabaseSection)
    password = None
    url = database_url(db)
    if db.owner_password_file or db.owner_password_env:
        names = {"owner_password_file": db.owner_password_file}
        names["owner_password_env"] = db.owner_password_env
        password = read_secret(cfg, names, "owner_password", "database")
    elif not url and (cfg.base_dir / roles.OWNER_PASSWORD_FILE).exists():  # an older ca.toml
        password = read_secret(
            cfg, {"owner_password_file": roles.OWNER_PASSWORD_FILE}, "owner_password", "database"
        )
    if url:
        return Target(url, password)
    pg_dir = embedded_database_dir(cfg, db)
    assert pg_dir is not None
    if start:
        ensure_running(pg_dir)
    elif not Cluster(pg_dir).is_running():
        raise AdminError(
            f"the database is down: the embedded cluster under {pg_dir} is not "
            "running (start it with `ca-admin db-start`, or pass --start-db)"
        )
    return Target(Cluster(pg_dir).dsn(user=db.owner), password)


def run_as_owner(
    args: argparse.Namespace,
    work: Callable[[asyncpg.Connection], Awaitable[int]],
    *,
    start: bool | None = None,
) -> int:
    """Run one verb's ``work`` on a connection as the owner role, closed afterwards.

    ``start`` defaults to the ``--start-db`` option; a verb that must never start the
    database passes ``False``."""
    target = owner_target(args.config, args.start_db if start is None else start)

    async def session() -> int:
        conn = await connect(target.dsn, password=target.password)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(session())


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the pending SQL migrations."""

    async def work(conn: asyncpg.Connection) -> int:
        applied = await migrate(conn)
        print(
            f"applied migrations: {', '.join(map(str, applied))}"
            if applied
            else "database is up to date"
        )
        return 0

    return run_as_owner(args, work)


def _cluster(args: argparse.Namespace) -> Cluster:
    pg_dir = _embedded_dir(args.config)
    if pg_dir is None:
        raise AdminError("the configured database is not the embedded one")
    return Cluster(pg_dir)


def cmd_db_start(args: argparse.Namespace) -> int:
    """Initialise and start the embedded cluster; print its URL."""
    print(ensure_running(_cluster(args).root))
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    """Stop the embedded cluster."""
    _cluster(args).stop()
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    """Print the database URL in use (the owner's for a configured one)."""
    pg_dir = _embedded_dir(args.config)
    print(owner_target(args.config, args.start_db).dsn if pg_dir is None else Cluster(pg_dir).dsn())
    return 0
