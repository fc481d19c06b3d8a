"""``ca-admin``'s officer verbs: create, unlock, second-factor recovery, the unlock right.

They run as the database owner, outside the RA pages: the first officer, an officer every
other officer is locked out by, and the right to unlock others are given here only, each
audited with ``ca-admin`` as the actor.
"""

from __future__ import annotations

import argparse
import sys

import asyncpg
from argon2 import PasswordHasher

from admin.database import ACTOR, AdminError, run_as_owner
from db import audit
from db.migrate import migrate
from db.queries import officer_factors, officers
from db.queries import sessions as session_q

OFFICER_PASSWORD_MIN = 10


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
    """Create an officer with the password read from stdin (never an argument: it would show
    in the process list and the shell history); migrates first, as on a fresh database."""
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

    return run_as_owner(args, work)


def cmd_unlock_officer(args: argparse.Namespace) -> int:
    """Unlock an officer locked by failed logins: the way back when no officer with the
    unlock right can log in."""

    async def work(conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            if not await officers.unlock(conn, args.login):
                raise AdminError(f"no officer {args.login!r}")
            await audit.append(conn, actor=ACTOR, action="officer_unlocked", target=args.login)
        print(f"unlocked RA officer {args.login}")
        return 0

    return run_as_owner(args, work)


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

    return run_as_owner(args, work)


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

    return run_as_owner(args, work)


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

    return run_as_owner(args, work, start=False)


def cmd_grant_unlock(args: argparse.Namespace) -> int:
    """Let an officer unlock other officers from the RA pages."""
    return _set_can_unlock(args, True)


def cmd_revoke_unlock(args: argparse.Namespace) -> int:
    """Take the right to unlock other officers away again."""
    return _set_can_unlock(args, False)
