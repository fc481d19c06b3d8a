"""One-time CMP enrolment secrets, issued by an RA officer as a separate action (not on the
registration slip: the portal password never becomes a CMP secret).

The subscriber gets a reference (their account name, sent as senderKID) and a random secret
for ``openssl cmp -ref ACCOUNT -secret pass:SECRET``. It protects one enrolment (the first
``ir``/``cr``/``p10cr`` whose MAC verifies uses it up, its ``certConf`` ends it), expires after
``[gateway] cmp_secret_days``, and a new one replaces any open one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from db import audit
from db.queries import cmp as cmp_q
from db.queries import subscribers as sub_q
from gateway.clock import Clock
from gateway.errors import ApiError, Kind


@dataclass(frozen=True)
class IssuedSecret:
    reference: str
    secret: str
    expires_at: datetime


def new_secret() -> str:
    """120 random bits, base32 in groups of four (typed from a printout)."""
    import base64

    raw = base64.b32encode(secrets.token_bytes(15)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


class EnrolmentSecrets:
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock, days: int) -> None:
        self.pool = pool
        self.clock = clock
        self.lifetime = timedelta(days=days)

    async def issue(
        self, *, subscriber_id: int, officer_id: int, officer_login: str
    ) -> IssuedSecret:
        now = self.clock()
        secret = new_secret()
        async with self.pool.acquire() as conn, conn.transaction():
            view = await sub_q.view_by_subscriber_id(conn, subscriber_id, for_update=True)
            if view is None:
                raise ApiError(Kind.NOT_FOUND, "no such subscriber")
            secret_id = await cmp_q.replace_secret(
                conn,
                account_id=view.account.id,
                secret=secret,
                now=now,
                expires_at=now + self.lifetime,
                officer_id=officer_id,
            )
            await audit.append(
                conn,
                actor=officer_login,
                action="cmp_secret_issued",
                target=view.account.account,
                details={"secret_id": secret_id, "protocol": "cmp"},
                at=now,
            )
        return IssuedSecret(view.account.account, secret, now + self.lifetime)
