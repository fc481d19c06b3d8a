"""CMP state: one-time enrolment secrets, transactions, and the replay window's nonces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class EnrolmentSecret:
    id: int
    account_id: int
    secret: str | None  # None once wiped
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class Transaction:
    transaction_id: bytes
    account_id: int | None
    secret_id: int | None
    certificate_id: int | None
    cert_req_id: int | None
    state: str  # waiting (for certConf), done


def _secret(r: asyncpg.Record) -> EnrolmentSecret:
    return EnrolmentSecret(
        id=r["id"],
        account_id=r["account_id"],
        secret=r["secret"],
        expires_at=r["expires_at"],
        used_at=r["used_at"],
    )


def _transaction(r: asyncpg.Record) -> Transaction:
    return Transaction(
        transaction_id=bytes(r["transaction_id"]),
        account_id=r["account_id"],
        secret_id=r["secret_id"],
        certificate_id=r["certificate_id"],
        cert_req_id=r["cert_req_id"],
        state=r["state"],
    )


async def replace_secret(
    conn: asyncpg.Connection,
    *,
    account_id: int,
    secret: str,
    now: datetime,
    expires_at: datetime,
    officer_id: int | None,
) -> int:
    """A new open secret for the account; an open one it had is closed (and wiped) first.
    Run inside a transaction."""
    await conn.execute(
        """UPDATE cmp_enrolment_secrets SET used_at = $2, secret = NULL
           WHERE account_id = $1 AND used_at IS NULL""",
        account_id,
        now,
    )
    return await conn.fetchval(
        """INSERT INTO cmp_enrolment_secrets (account_id, secret, created_at, expires_at,
                                             created_by)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        account_id,
        secret,
        now,
        expires_at,
        officer_id,
    )


async def open_secret(
    conn: asyncpg.Connection, account_id: int, now: datetime
) -> EnrolmentSecret | None:
    r = await conn.fetchrow(
        """SELECT id, account_id, secret, expires_at, used_at FROM cmp_enrolment_secrets
           WHERE account_id = $1 AND used_at IS NULL AND expires_at > $2
             AND secret IS NOT NULL""",
        account_id,
        now,
    )
    return _secret(r) if r else None


async def secret_by_id(conn: asyncpg.Connection, secret_id: int) -> EnrolmentSecret | None:
    r = await conn.fetchrow(
        """SELECT id, account_id, secret, expires_at, used_at FROM cmp_enrolment_secrets
           WHERE id = $1""",
        secret_id,
    )
    return _secret(r) if r else None


async def use_secret(conn: asyncpg.Connection, secret_id: int, now: datetime) -> bool:
    """Mark the secret used (its text stays until the transaction ends: certConf is
    protected with it). False when another request used it first."""
    done = await conn.fetchval(
        """UPDATE cmp_enrolment_secrets SET used_at = $2
           WHERE id = $1 AND used_at IS NULL RETURNING id""",
        secret_id,
        now,
    )
    return done is not None


async def wipe_secret(conn: asyncpg.Connection, secret_id: int) -> None:
    await conn.execute("UPDATE cmp_enrolment_secrets SET secret = NULL WHERE id = $1", secret_id)


async def seen_nonce(conn: asyncpg.Connection, transaction_id: bytes, nonce: bytes) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM cmp_nonces WHERE transaction_id = $1 AND sender_nonce = $2",
            transaction_id,
            nonce,
        )
    )


async def record_nonce(
    conn: asyncpg.Connection, transaction_id: bytes, nonce: bytes, now: datetime
) -> bool:
    """False when the pair was seen already (a replay that raced the first check)."""
    done = await conn.fetchval(
        """INSERT INTO cmp_nonces (transaction_id, sender_nonce, seen_at) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING 1""",
        transaction_id,
        nonce,
        now,
    )
    return done is not None


async def transaction(conn: asyncpg.Connection, transaction_id: bytes) -> Transaction | None:
    r = await conn.fetchrow(
        """SELECT transaction_id, account_id, secret_id, certificate_id, cert_req_id, state
           FROM cmp_transactions WHERE transaction_id = $1""",
        transaction_id,
    )
    return _transaction(r) if r else None


async def start_transaction(
    conn: asyncpg.Connection,
    *,
    transaction_id: bytes,
    account_id: int | None,
    secret_id: int | None,
    now: datetime,
) -> bool:
    """False when the ID is in use (transactionIdInUse)."""
    done = await conn.fetchval(
        """INSERT INTO cmp_transactions (transaction_id, account_id, secret_id, state,
                                        created_at, updated_at)
           VALUES ($1, $2, $3, 'waiting', $4, $4)
           ON CONFLICT (transaction_id) DO NOTHING RETURNING 1""",
        transaction_id,
        account_id,
        secret_id,
        now,
    )
    return done is not None


async def set_certificate(
    conn: asyncpg.Connection,
    transaction_id: bytes,
    *,
    certificate_id: int,
    cert_req_id: int,
    done: bool,
    now: datetime,
) -> None:
    await conn.execute(
        """UPDATE cmp_transactions SET certificate_id = $2, cert_req_id = $3, state = $4,
                                      updated_at = $5
           WHERE transaction_id = $1""",
        transaction_id,
        certificate_id,
        cert_req_id,
        "done" if done else "waiting",
        now,
    )


async def finish(conn: asyncpg.Connection, transaction_id: bytes, now: datetime) -> bool:
    """waiting → done; False when it was not waiting (confirmed already)."""
    done = await conn.fetchval(
        """UPDATE cmp_transactions SET state = 'done', updated_at = $2
           WHERE transaction_id = $1 AND state = 'waiting' RETURNING 1""",
        transaction_id,
        now,
    )
    return done is not None


async def purge(
    conn: asyncpg.Connection,
    *,
    nonces_before: datetime,
    transactions_before: datetime,
    now: datetime,
) -> None:
    """Forget nonces older than the replay window, finished or abandoned transactions, and
    wipe the text of secrets that can no longer be used."""
    await conn.execute("DELETE FROM cmp_nonces WHERE seen_at < $1", nonces_before)
    await conn.execute("DELETE FROM cmp_transactions WHERE created_at < $1", transactions_before)
    await conn.execute(
        """UPDATE cmp_enrolment_secrets SET secret = NULL
           WHERE secret IS NOT NULL AND (expires_at <= $1 OR used_at < $2)""",
        now,
        transactions_before,
    )


async def release_secret(conn: asyncpg.Connection, secret_id: int, transaction_id: bytes) -> None:
    """Issuance failed after the secret was taken: it opens again (unless the RA replaced
    it meanwhile) and the transaction is forgotten, so the subscriber can try again."""
    async with conn.transaction():
        await conn.execute("DELETE FROM cmp_transactions WHERE transaction_id = $1", transaction_id)
        await conn.execute(
            """UPDATE cmp_enrolment_secrets s SET used_at = NULL
               WHERE s.id = $1 AND s.secret IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM cmp_enrolment_secrets o
                   WHERE o.account_id = s.account_id AND o.used_at IS NULL)""",
            secret_id,
        )
