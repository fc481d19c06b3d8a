"""``ca-admin``: database chores against the same configuration as the gateway.

Verbs: ``migrate``, ``create-officer LOGIN [--can-unlock]`` (password on stdin),
``unlock-officer LOGIN``, ``grant-unlock LOGIN`` / ``revoke-unlock LOGIN`` (the right to unlock
other officers from the RA pages), ``officer-factors LOGIN`` / ``remove-officer-factors LOGIN
[--id N]`` (second-factor recovery), ``audit verify`` (the hash chain, then every signed
checkpoint in the database and in the signer's checkpoint file), and ``db-start`` / ``db-stop``
/ ``db-url`` for the embedded cluster.

Only ``db-start`` (or any verb with ``--start-db``) starts the embedded cluster: a verb that finds
the database down says so and exits 1, so a stopped database is never restarted behind the
operator's back (someone may have stopped it on purpose).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher

from config.loader import ConfigError, load, read_secret
from config.sections import DatabaseSection, database_url, embedded_database_dir, parse_section
from db import audit, checkpoints, roles
from db.embedded import Cluster, EmbeddedError, ensure_running
from db.migrate import MigrationError, migrate
from db.pool import connect
from db.queries import officer_factors, officers
from db.queries import sessions as session_q
from hsm_config import journal
from signer import role_keys
from signer.checkpoints import read_ledger

OFFICER_PASSWORD_MIN = 10
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


def _dsn(config: str | None, start: bool = False) -> Target:
    return owner_target(config, start)


async def _with_conn(target: Target, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    conn = await connect(target.dsn, password=target.password)
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

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


def _read_password() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if len(password) < OFFICER_PASSWORD_MIN:
        raise AdminError(f"the password must have at least {OFFICER_PASSWORD_MIN} characters")
    return password


async def add_officer(
    conn: asyncpg.Connection,
    login: str,
    password_hash: str,
    *,
    can_unlock: bool,
    actor: str = ACTOR,
) -> int:
    """Create an RA officer and its ``officer_created`` audit event in one transaction: the
    one way an officer comes to be outside the RA pages (``create-officer``, and the first
    officer of ``make run``). A login in use raises ``asyncpg.UniqueViolationError``."""
    async with conn.transaction():
        officer_id = await officers.insert(conn, login, password_hash, can_unlock=can_unlock)
        await audit.append(
            conn,
            actor=actor,
            action="officer_created",
            target=login,
            details={"officer_id": officer_id, "can_unlock": can_unlock},
        )
    return officer_id


def cmd_create_officer(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        print(f"password for {args.login}: ", end="", file=sys.stderr, flush=True)
    password_hash = PasswordHasher().hash(_read_password())

    async def work(conn: asyncpg.Connection) -> int:
        await migrate(conn)
        try:
            await add_officer(conn, args.login, password_hash, can_unlock=args.can_unlock)
        except asyncpg.UniqueViolationError as exc:
            raise AdminError(f"officer {args.login!r} exists already") from exc
        except asyncpg.CheckViolationError as exc:
            raise AdminError(
                "the login must be 2-64 of a-z 0-9 . _ - (starting with a letter or digit)"
            ) from exc
        print(f"created RA officer {args.login}")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


def cmd_unlock_officer(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            if not await officers.unlock(conn, args.login):
                raise AdminError(f"no officer {args.login!r}")
            await audit.append(conn, actor=ACTOR, action="officer_unlocked", target=args.login)
        print(f"unlocked RA officer {args.login}")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


def _checkpoint_sources(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The audit public key and the signer's checkpoint file: options, else the config."""
    key = Path(args.public_key) if args.public_key else None
    ledger = Path(args.checkpoints) if args.checkpoints else None
    if key is None or ledger is None:
        try:
            cfg = load(args.config)
        except ConfigError:
            return key, ledger
        key = key or role_keys.AUDIT.public_key_path(cfg)
        ledger = ledger or cfg.resolve(
            str(cfg.section("signer").get("audit_checkpoint_file") or "audit/checkpoints.jsonl")
        )
    return key, ledger


async def _officer(conn: asyncpg.Connection, login: str) -> officers.Officer:
    officer = await officers.by_login(conn, login)
    if officer is None:
        raise AdminError(f"no officer {login!r}")
    return officer


def cmd_officer_factors(args: argparse.Namespace) -> int:
    """List an officer's second factors (ids for ``remove-officer-factors --id``)."""

    async def work(conn: asyncpg.Connection) -> int:
        officer = await _officer(conn, args.login)
        factors = await officer_factors.for_officer(conn, officer.id)
        for f in factors:
            used = f.last_used_at.isoformat() if f.last_used_at else "never"
            print(
                f"{f.id}\t{f.kind}\t{f.name}\tenrolled {f.created_at.isoformat()}\tlast used {used}"
            )
        if not factors:
            print(f"RA officer {args.login} has no second factor")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


def cmd_remove_officer_factors(args: argparse.Namespace) -> int:
    """Recovery for a lost or compromised authenticator: remove the officer's factors (or the
    one ``--id``), end the officer's sessions, audit it (``officer_factor_removed``). Under
    ``officer_second_factor = "required"`` the officer's next login then only enrols."""

    async def work(conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            officer = await _officer(conn, args.login)
            removed = await officer_factors.delete_for_officer(conn, officer.id, args.id)
            if not removed:
                raise AdminError(f"officer {args.login!r} has no such second factor")
            ended = await session_q.delete_for_officer(conn, officer.id)
            await audit.append(
                conn,
                actor=ACTOR,
                action="officer_factor_removed",
                target=args.login,
                details={
                    "factors": [{"id": f.id, "kind": f.kind, "name": f.name} for f in removed],
                    "sessions_ended": ended,
                },
            )
        print(f"removed {len(removed)} second factor(s) of RA officer {args.login}")
        return 0

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


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
    key_path, ledger_path = _checkpoint_sources(args)

    async def work(conn: asyncpg.Connection) -> int:
        rc = 0
        result = await audit.verify(conn)
        if result.ok:
            print(f"audit chain ok: {result.checked} events")
        else:
            print(
                f"audit chain BROKEN at event {result.first_broken_id}: {result.problem} "
                f"({result.checked} events before it verified)"
            )
            rc = 1
        sources = [
            (f"database checkpoint {i}", cp)
            for i, cp in enumerate(await checkpoints.stored(conn), 1)
        ]
        in_db = len(sources)
        if ledger_path is not None and ledger_path.exists():
            try:
                entries = read_ledger(ledger_path)
            except ValueError as exc:
                raise AdminError(str(exc)) from exc
            sources += [
                (f"file checkpoint {i} ({ledger_path})", cp) for i, cp in enumerate(entries, 1)
            ]
        if not sources:
            print(
                "WARNING: no signed audit checkpoints to check (the newest rows could be "
                "removed unnoticed)"
            )
            return rc
        if key_path is None or not key_path.exists():
            raise AdminError(
                f"the audit public key {key_path} is missing: checkpoints cannot "
                "be verified (ca-keys audit-key records it)"
            )
        checked, failures = await checkpoints.check(
            conn, role_keys.load_public_key(key_path), sources
        )
        for f in failures:
            print(f"checkpoint FAILED: {f.source}, event id {f.last_id}: {f.problem}")
        if failures:
            return 1
        newest = max(cp.request.last_id for _, cp in sources)
        print(
            f"audit checkpoints ok: {checked} signed checkpoints ({in_db} in the database, "
            f"{checked - in_db} in {ledger_path}), newest at event {newest}"
        )
        return rc

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


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

    return asyncio.run(_with_conn(_dsn(args.config, args.start_db), work))


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
    print(_dsn(args.config, args.start_db).dsn if pg_dir is None else Cluster(pg_dir).dsn())
    return 0


VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "create-officer": cmd_create_officer,
    "unlock-officer": cmd_unlock_officer,
    "officer-factors": cmd_officer_factors,
    "remove-officer-factors": cmd_remove_officer_factors,
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
    p.add_argument(
        "--start-db",
        action="store_true",
        help="start the embedded database if it is not running (never otherwise)",
    )
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
    sp = sub.add_parser("officer-factors", help="list an RA officer's second factors")
    sp.add_argument("login")
    sp = sub.add_parser(
        "remove-officer-factors",
        help="remove an RA officer's second factors (all, or --id N); audited",
    )
    sp.add_argument("login")
    sp.add_argument("--id", type=int, default=None, help="only this factor (officer-factors)")
    ap = sub.add_parser("audit", help="audit log tools")
    ap.add_argument("action", choices=["verify", "import-journal"])
    ap.add_argument("path", nargs="?", help="journal file (import-journal; default from [ca] dir)")
    ap.add_argument("--public-key", help="verify: the audit key's PEM (default from [ca])")
    ap.add_argument(
        "--checkpoints",
        help="verify: the signer's checkpoint file (default from [signer] audit_checkpoint_file)",
    )
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
    except (OSError, asyncpg.CannotConnectNowError) as exc:
        print(f"ca-admin: the database is down or unreachable: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"ca-admin: database: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
