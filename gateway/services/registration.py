"""RA work: register subscribers (the password slip), search, view, reset passwords."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from db import audit
from db.queries import certificates as cert_q
from db.queries import sessions as session_q
from db.queries import subscribers as sub_q
from gateway import identity
from gateway.clock import Clock
from gateway.errors import ApiError, Kind
from gateway.services.passwords import Passwords, generate_account_name


@dataclass(frozen=True)
class Slip:
    """What the RA officer hands over on paper; the password is never stored in clear."""

    subscriber_id: int
    account: str
    initial_password: str
    name: str
    subject_cn: str


class RegistrationService:
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock, passwords: Passwords) -> None:
        self.pool = pool
        self.clock = clock
        self.passwords = passwords

    async def register(
        self, new: sub_q.NewSubscriber, *, officer_id: int, officer_login: str
    ) -> Slip:
        new = identity.checked(new)  # real ID numbers, country codes, e-mail: invalid_field
        password = self.passwords.generate()
        password_hash = await self.passwords.hash(password)
        now = self.clock()
        async with self.pool.acquire() as conn:
            for _attempt in range(5):
                account = generate_account_name()
                try:
                    async with conn.transaction():
                        sid = await sub_q.insert_subscriber(conn, new, registered_by=officer_id)
                        await sub_q.insert_account(
                            conn, subscriber_id=sid, account=account, password_hash=password_hash
                        )
                        await audit.append(
                            conn,
                            actor=officer_login,
                            action="subscriber_registered",
                            target=account,
                            details={
                                "subscriber_id": sid,
                                "subject_cn": new.subject_cn,
                                "usages": list(new.usages),
                            },
                            at=now,
                        )
                except asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name == "accounts_account_key":
                        continue  # a generated name collided: draw another
                    raise ApiError(
                        Kind.DUPLICATE, "a subscriber with this id_number or subject.cn exists"
                    ) from exc
                except asyncpg.CheckViolationError as exc:
                    raise ApiError(
                        Kind.INVALID_FIELD,
                        "a field is out of range",
                        field=exc.constraint_name or "",
                    ) from exc
                return Slip(sid, account, password, new.name, new.subject_cn)
        raise ApiError(Kind.INTERNAL, "could not allocate an account name")

    async def search(
        self, q: str
    ) -> list[tuple[sub_q.SubscriberView, list[cert_q.CertificateRow]]]:
        async with self.pool.acquire() as conn:
            views = await sub_q.search(conn, q)
            certs = await cert_q.issued_for_subscribers(conn, [v.subscriber.id for v in views])
        return [(v, certs.get(v.subscriber.id, [])) for v in views]

    async def view(
        self, subscriber_id: int
    ) -> tuple[sub_q.SubscriberView, list[cert_q.CertificateRow]]:
        async with self.pool.acquire() as conn:
            view = await sub_q.view_by_subscriber_id(conn, subscriber_id)
            if view is None:
                raise ApiError(Kind.NOT_FOUND, "no such subscriber")
            certs = await cert_q.issued_for_subscribers(conn, [subscriber_id])
        return view, certs.get(subscriber_id, [])

    async def reset_password(self, subscriber_id: int, *, officer_login: str) -> Slip:
        """New slip password; unlocks, forces a change at the next login, ends sessions."""
        password = self.passwords.generate()
        password_hash = await self.passwords.hash(password)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            view = await sub_q.view_by_subscriber_id(conn, subscriber_id, for_update=True)
            if view is None:
                raise ApiError(Kind.NOT_FOUND, "no such subscriber")
            acc = view.account
            await sub_q.set_password(
                conn, acc.id, password_hash=password_hash, must_change=True, now=now
            )
            ended = await session_q.delete_for_account(conn, acc.id)
            await audit.append(
                conn,
                actor=officer_login,
                action="password_reset",
                target=acc.account,
                details={
                    "subscriber_id": subscriber_id,
                    "was_locked": acc.locked,
                    "failed_attempts": acc.failed_attempts,
                    "sessions_ended": ended,
                },
                at=now,
            )
        return Slip(
            subscriber_id, acc.account, password, view.subscriber.name, view.subscriber.subject_cn
        )

    async def audit_events(self, *, after_id: int, limit: int) -> list[audit.AuditEvent]:
        async with self.pool.acquire() as conn:
            return await audit.list_events(conn, after_id=after_id, limit=limit)

    async def audit_events_newest_first(
        self, *, before_id: int, limit: int
    ) -> list[audit.AuditEvent]:
        async with self.pool.acquire() as conn:
            return await audit.list_events_newest_first(conn, before_id=before_id, limit=limit)
