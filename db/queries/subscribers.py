"""Subscribers and their portal accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.queries import lockout


@dataclass(frozen=True)
class Subscriber:
    id: int
    id_number: str
    name: str
    email: str
    phone: str
    address: str
    subject_cn: str
    subject_ou: tuple[str, ...]
    subject_o: str
    subject_c: str
    usages: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class Account:
    id: int
    subscriber_id: int
    account: str
    password_hash: str
    must_change_password: bool
    failed_attempts: int
    locked_at: datetime | None

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


@dataclass(frozen=True)
class SubscriberView:
    subscriber: Subscriber
    account: Account


@dataclass(frozen=True)
class NewSubscriber:
    id_number: str
    name: str
    email: str
    phone: str
    address: str
    subject_cn: str
    subject_ou: tuple[str, ...]
    subject_o: str
    subject_c: str
    usages: tuple[str, ...]


_SUB_COLS = """s.id AS s_id, s.id_number, s.name, s.email, s.phone, s.address, s.subject_cn,
    s.subject_ou, s.subject_o, s.subject_c, s.usages, s.created_at AS s_created_at"""
_ACC_COLS = """a.id AS a_id, a.subscriber_id, a.account, a.password_hash,
    a.must_change_password, a.failed_attempts, a.locked_at"""


def _subscriber(r: asyncpg.Record) -> Subscriber:
    return Subscriber(
        id=r["s_id"],
        id_number=r["id_number"],
        name=r["name"],
        email=r["email"],
        phone=r["phone"],
        address=r["address"],
        subject_cn=r["subject_cn"],
        subject_ou=tuple(r["subject_ou"]),
        subject_o=r["subject_o"],
        subject_c=r["subject_c"],
        usages=tuple(r["usages"]),
        created_at=r["s_created_at"],
    )


def _account(r: asyncpg.Record) -> Account:
    return Account(
        id=r["a_id"],
        subscriber_id=r["subscriber_id"],
        account=r["account"],
        password_hash=r["password_hash"],
        must_change_password=r["must_change_password"],
        failed_attempts=r["failed_attempts"],
        locked_at=r["locked_at"],
    )


subscriber_from_record = _subscriber
account_from_record = _account


async def insert_subscriber(
    conn: asyncpg.Connection, new: NewSubscriber, *, registered_by: int | None
) -> int:
    return await conn.fetchval(
        """INSERT INTO subscribers (id_number, name, email, phone, address, subject_cn,
               subject_ou, subject_o, subject_c, usages, registered_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
        new.id_number,
        new.name,
        new.email,
        new.phone,
        new.address,
        new.subject_cn,
        list(new.subject_ou),
        new.subject_o,
        new.subject_c,
        list(new.usages),
        registered_by,
    )


async def insert_account(
    conn: asyncpg.Connection, *, subscriber_id: int, account: str, password_hash: str
) -> int:
    # a name that failed logins before it existed starts clean
    await lockout.forget_unknown(conn, "unknown_login_failures", account)
    return await conn.fetchval(
        """INSERT INTO accounts (subscriber_id, account, password_hash)
           VALUES ($1, $2, $3) RETURNING id""",
        subscriber_id,
        account,
        password_hash,
    )


async def account_by_name(
    conn: asyncpg.Connection, account: str, *, for_update: bool = False
) -> Account | None:
    lock = " FOR UPDATE" if for_update else ""
    r = await conn.fetchrow(
        f"SELECT {_ACC_COLS} FROM accounts a WHERE a.account = $1{lock}",  # noqa: S608 - constant column lists and lock clause only
        account,
    )
    return _account(r) if r else None


async def account_by_id(
    conn: asyncpg.Connection, account_id: int, *, for_update: bool = False
) -> Account | None:
    lock = " FOR UPDATE" if for_update else ""
    r = await conn.fetchrow(
        f"SELECT {_ACC_COLS} FROM accounts a WHERE a.id = $1{lock}",  # noqa: S608 - constant column lists and lock clause only
        account_id,
    )
    return _account(r) if r else None


async def view_by_account_id(conn: asyncpg.Connection, account_id: int) -> SubscriberView | None:
    r = await conn.fetchrow(
        f"""SELECT {_SUB_COLS}, {_ACC_COLS} FROM accounts a
            JOIN subscribers s ON s.id = a.subscriber_id WHERE a.id = $1""",  # noqa: S608 - constant columns
        account_id,
    )
    return SubscriberView(_subscriber(r), _account(r)) if r else None


async def view_by_subscriber_id(
    conn: asyncpg.Connection, subscriber_id: int, *, for_update: bool = False
) -> SubscriberView | None:
    lock = " FOR UPDATE OF a" if for_update else ""
    r = await conn.fetchrow(
        f"""SELECT {_SUB_COLS}, {_ACC_COLS} FROM subscribers s
            JOIN accounts a ON a.subscriber_id = s.id WHERE s.id = $1{lock}""",  # noqa: S608 - constant columns
        subscriber_id,
    )
    return SubscriberView(_subscriber(r), _account(r)) if r else None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(conn: asyncpg.Connection, q: str, *, limit: int = 200) -> list[SubscriberView]:
    pattern = f"%{_like_escape(q)}%"
    rows = await conn.fetch(
        f"""SELECT {_SUB_COLS}, {_ACC_COLS} FROM subscribers s
            JOIN accounts a ON a.subscriber_id = s.id
            WHERE $1 = '%%'
               OR s.id_number ILIKE $1 OR a.account ILIKE $1 OR s.name ILIKE $1
               OR s.subject_cn ILIKE $1 OR s.email ILIKE $1
            ORDER BY s.id LIMIT $2""",  # noqa: S608 - constant columns
        pattern,
        limit,
    )
    return [SubscriberView(_subscriber(r), _account(r)) for r in rows]


async def record_failure(
    conn: asyncpg.Connection, account_id: int, *, lock_at: int, now: datetime
) -> lockout.Failure:
    """Count a failed login (atomically); lock at ``lock_at`` failures."""
    return await lockout.record_failure(conn, "accounts", account_id, lock_at=lock_at, now=now)


async def record_success(conn: asyncpg.Connection, account_id: int, *, password_hash: str) -> bool:
    """Reset the count, unless the account was locked or its password changed meanwhile."""
    return await lockout.record_success(conn, "accounts", account_id, password_hash=password_hash)


async def record_unknown_failure(conn: asyncpg.Connection, account: str, *, now: datetime) -> int:
    return await lockout.record_unknown_failure(conn, "unknown_login_failures", account, now=now)


async def set_password(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    password_hash: str,
    must_change: bool,
    now: datetime,
) -> None:
    """New password; also clears the failure count and the lock (an RA reset unlocks)."""
    await conn.execute(
        """UPDATE accounts SET password_hash = $2, must_change_password = $3,
               failed_attempts = 0, locked_at = NULL, password_changed_at = $4
           WHERE id = $1""",
        account_id,
        password_hash,
        must_change,
        now,
    )
