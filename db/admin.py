"""``ca-admin``: database chores against the same configuration as the gateway.

Verbs: ``migrate``, ``create-officer LOGIN [--can-unlock]`` (password on stdin),
``unlock-officer LOGIN``, ``grant-unlock LOGIN`` / ``revoke-unlock LOGIN`` (the right to unlock
other officers from the RA pages), ``audit verify``, and ``db-start`` / ``db-stop`` /
``db-url`` for the embedded cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher

from db import audit
from db.embedded import Cluster, EmbeddedError, ensure_running
from db.migrate import MigrationError, migrate
from db.pool import connect
from db.queries import officers
from hsm_config import journal
from hsm_config.config import ConfigError, load

OFFICER_PASSWORD_MIN = 10
ACTOR = "ca-admin"


class AdminError(Exception):
    """A verb failed; the message is for the operator."""


def _embedded_dir(config: str | None) -> Path | None:
    """The embedded cluster's folder, or None when [database] url / DATABASE_URL is set."""
    if os.environ.get("DATABASE_URL"):
        return None
    cfg = load(config)
    url = cfg.section("database").get("url", "")
    return None if url else cfg.base_dir / "pg"


def _dsn(config: str | None) -> str:
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    cfg = load(config)
    url = cfg.section("database").get("url", "")
    if url:
        return str(url)
    pg_dir = cfg.base_dir / "pg"
    return ensure_running(pg_dir)


async def _with_conn(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    conn = await connect(dsn)
    try:
        return await work(conn)
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        applied = await migrate(conn)
        print(
            f"applied migrations: {', '.join(map(str, applied))}"
            if applied
            else "database is up to date"
        )
        return 0

    return asyncio.run(_with_conn(_dsn(args.config), work))


def _read_password() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if len(password) < OFFICER_PASSWORD_MIN:
        raise AdminError(f"the password must have at least {OFFICER_PASSWORD_MIN} characters")
    return password


def cmd_create_officer(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        print(f"password for {args.login}: ", end="", file=sys.stderr, flush=True)
    password_hash = PasswordHasher().hash(_read_password())

    async def work(conn: asyncpg.Connection) -> int:
        await migrate(conn)
        try:
            async with conn.transaction():
                officer_id = await officers.insert(
                    conn, args.login, password_hash, can_unlock=args.can_unlock
                )
                await audit.append(
                    conn,
                    actor=ACTOR,
                    action="officer_created",
                    target=args.login,
                    details={"officer_id": officer_id, "can_unlock": args.can_unlock},
                )
        except asyncpg.UniqueViolationError as exc:
            raise AdminError(f"officer {args.login!r} exists already") from exc
        except asyncpg.CheckViolationError as exc:
            raise AdminError(
                "the login must be 2-64 of a-z 0-9 . _ - (starting with a letter or digit)"
            ) from exc
        print(f"created RA officer {args.login}")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config), work))


def cmd_unlock_officer(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            if not await officers.unlock(conn, args.login):
                raise AdminError(f"no officer {args.login!r}")
            await audit.append(conn, actor=ACTOR, action="officer_unlocked", target=args.login)
        print(f"unlocked RA officer {args.login}")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config), work))


def _set_can_unlock(args: argparse.Namespace, allowed: bool) -> int:
    """Give or take the right to unlock other officers; only this tool (the database owner's
    side) can, never the gateway."""

    action = "officer_unlock_right_granted" if allowed else "officer_unlock_right_revoked"

    async def work(conn: asyncpg.Connection) -> int:
        await migrate(conn)
        async with conn.transaction():
            if not await officers.set_can_unlock(conn, args.login, allowed):
                raise AdminError(f"no officer {args.login!r}")
            await audit.append(
                conn,
                actor=ACTOR,
                action=action,
                target=args.login,
            )
        print(f"RA officer {args.login} {'may' if allowed else 'may no longer'} unlock officers")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config), work))


def cmd_grant_unlock(args: argparse.Namespace) -> int:
    return _set_can_unlock(args, True)


def cmd_revoke_unlock(args: argparse.Namespace) -> int:
    return _set_can_unlock(args, False)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "import-journal":
        return cmd_import_journal(args)

    async def work(conn: asyncpg.Connection) -> int:
        result = await audit.verify(conn)
        if result.ok:
            print(f"audit chain ok: {result.checked} events")
            return 0
        print(
            f"audit chain BROKEN at event {result.first_broken_id}: {result.problem} "
            f"({result.checked} events before it verified)"
        )
        return 1

    return asyncio.run(_with_conn(_dsn(args.config), work))


def cmd_import_journal(args: argparse.Namespace) -> int:
    """Copy new key-ceremony journal entries into the audit log, each exactly once."""
    path = Path(args.path) if args.path else journal.journal_path(load(args.config))
    try:
        entries = journal.read(path)
    except ValueError as exc:
        raise AdminError(str(exc)) from exc

    async def work(conn: asyncpg.Connection) -> int:
        imported = 0
        async with conn.transaction():
            known = {
                row["jid"]
                for row in await conn.fetch(
                    "SELECT details->>'journal_id' AS jid FROM audit_events "
                    "WHERE details ? 'journal_id'"
                )
            }
            for entry in entries:
                if entry["journal_id"] in known:
                    continue
                details = dict(entry.get("details") or {})
                details["journal_id"] = entry["journal_id"]
                details["recorded_at"] = entry["at"]
                await audit.append(
                    conn,
                    actor=str(entry.get("actor", "security-officer")),
                    action=str(entry["action"]),
                    target=str(entry.get("target", "")),
                    details=details,
                )
                imported += 1
        print(f"imported {imported} ceremony journal entries from {path}")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config), work))


def _cluster(args: argparse.Namespace) -> Cluster:
    pg_dir = _embedded_dir(args.config)
    if pg_dir is None:
        raise AdminError("the configured database is not the embedded one")
    return Cluster(pg_dir)


def cmd_db_start(args: argparse.Namespace) -> int:
    print(ensure_running(_cluster(args).root))
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    _cluster(args).stop()
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    pg_dir = _embedded_dir(args.config)
    print(_dsn(args.config) if pg_dir is None else Cluster(pg_dir).dsn())
    return 0


VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "create-officer": cmd_create_officer,
    "unlock-officer": cmd_unlock_officer,
    "grant-unlock": cmd_grant_unlock,
    "revoke-unlock": cmd_revoke_unlock,
    "audit": cmd_audit,
    "db-start": cmd_db_start,
    "db-stop": cmd_db_stop,
    "db-url": cmd_db_url,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ca-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="configuration file (default: $CA_CONFIG or var/ca.toml)")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("migrate", help="apply pending SQL migrations")
    for verb, text in (
        ("create-officer", "create an RA officer (password on stdin)"),
        ("unlock-officer", "unlock an RA officer locked by failed logins"),
        ("grant-unlock", "let an RA officer unlock other officers from the RA pages"),
        ("revoke-unlock", "take that right away again"),
    ):
        sp = sub.add_parser(verb, help=text)
        sp.add_argument("login")
        if verb == "create-officer":
            sp.add_argument(
                "--can-unlock",
                action="store_true",
                help="the officer may unlock other officers locked by failed logins",
            )
    ap = sub.add_parser("audit", help="audit log tools")
    ap.add_argument("action", choices=["verify", "import-journal"])
    ap.add_argument("path", nargs="?", help="journal file (import-journal; default from [ca] dir)")
    sub.add_parser("db-start", help="initialise and start the embedded cluster")
    sub.add_parser("db-stop", help="stop the embedded cluster")
    sub.add_parser("db-url", help="print the database URL in use")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except (AdminError, ConfigError, EmbeddedError, MigrationError) as exc:
        print(f"ca-admin: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"ca-admin: database: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
