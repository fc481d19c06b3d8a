"""RA officers seen by other officers: the list, and unlocking one locked by failed logins.

Five wrong passwords lock an officer, and anyone who knows (or guesses) a login can enter
them. So that this is not a denial of service for the RA, an officer with the unlock right
(``ra_officers.can_unlock``, given only by ``ca-admin``) may unlock another one, audited, as
``ca-admin unlock-officer`` can on the server.
"""

from __future__ import annotations

import asyncpg

from db import audit
from db.queries import officers as officer_q
from gateway.clock import Clock
from gateway.errors import ApiError, Kind
from gateway.services.accounts import OfficerAuth


class OfficerService:
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def list(self) -> list[officer_q.Officer]:
        async with self.pool.acquire() as conn:
            return await officer_q.all_officers(conn)

    async def unlock(self, auth: OfficerAuth, login: str) -> officer_q.Officer:
        """Unlock ``login`` (and reset its failure count) for an officer with the right.

        The right is read in the same transaction, not from the session: taking it away with
        ``ca-admin revoke-unlock`` applies to the very next request."""
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            me = await officer_q.by_id(conn, auth.officer.id)
            if me is None or not me.can_unlock:
                raise ApiError(Kind.FORBIDDEN, "this officer may not unlock other officers")
            target = await officer_q.by_login(conn, login, for_update=True)
            if target is None:
                raise ApiError(Kind.NOT_FOUND, "no such officer")
            await officer_q.unlock(conn, login)
            await audit.append(
                conn,
                actor=me.login,
                action="officer_unlocked",
                target=login,
                details={
                    "was_locked": target.locked,
                    "failed_attempts": target.failed_attempts,
                    "via": "ra",
                },
                at=now,
            )
            after = await officer_q.by_login(conn, login)
        assert after is not None
        return after
