"""Logins (subscribers and RA officers), lockout, password changes, session checks.

Nothing here tells an unknown account from a known one: both run one Argon2 verification,
both count failures (unknown names in ``unknown_login_failures`` / ``unknown_officer_failures``),
both lock on the same attempt and get the same errors.

A login is: hashing queue full? (503 ``busy``, nothing else done) → rate limits (429, not
evaluated) → captcha → load the row (and release the connection) → Argon2 in the bounded
hashing executor (``busy`` when it filled meanwhile) → record the outcome in one short
transaction. No connection or row lock is held while Argon2 runs, so a
flood of logins cannot take the database pool; the outcome is recorded by atomic statements
(``db.queries.lockout``) so concurrent failures on one account still lock on the Nth.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from db import audit
from db.batch import Batcher
from db.queries import officers as officer_q
from db.queries import sessions as session_q
from db.queries import subscribers as sub_q
from gateway.captcha import CaptchaService
from gateway.clock import Clock
from gateway.errors import ApiError, Kind
from gateway.metrics import GatewayMetrics
from gateway.services.passwords import Passwords
from gateway.services.ratelimit import RateLimiter
from gateway.services.sessions import ActiveSession, NewSession, SessionStore

# sessions checked per statement: the authenticated requests in flight share one round trip
AUTH_BATCH_MAX = 128
BAD_CREDENTIALS = "the account or the password is not correct"
LOCKED = "the account is locked; ask the registration authority to reset the password"


Found = tuple[ActiveSession, asyncpg.Record]


@dataclass(frozen=True)
class LoginResult:
    session: NewSession
    must_change_password: bool


@dataclass(frozen=True)
class SubscriberAuth:
    session: ActiveSession
    account: sub_q.Account
    subscriber: sub_q.Subscriber | None = None  # loaded with the session (one statement)

    @property
    def view(self) -> sub_q.SubscriberView | None:
        if self.subscriber is None:
            return None
        return sub_q.SubscriberView(self.subscriber, self.account)


@dataclass(frozen=True)
class OfficerAuth:
    session: ActiveSession
    officer: officer_q.Officer
    # None: a complete login; "verify" / "enrol": the second factor is still due
    # (gateway.services.officer_factors)
    second_factor: str | None = None


class AccountService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        passwords: Passwords,
        sessions: SessionStore,
        captcha: CaptchaService | None,
        metrics: GatewayMetrics,
        max_failures: int,
        officer_max_failures: int,
        limits: RateLimiter,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.passwords = passwords
        self.sessions = sessions
        self.captcha = captcha  # None: captcha switched off
        self.metrics = metrics
        self.max_failures = max_failures
        self.officer_max_failures = officer_max_failures
        self.limits = limits
        self._sessions: Batcher[tuple[bytes, session_q.Kind], Found | None] = Batcher(
            self._flush_sessions, max_items=AUTH_BATCH_MAX, name="session batch"
        )

    async def _session(self, token: str | None, kind: session_q.Kind) -> Found | None:
        """The live session of ``token`` with its account (or officer) row. Not cached: a
        lock, reset or logout ends the session for the very next request; requests in flight
        together share the statement (``_flush_sessions``)."""
        key = self.sessions.key(token, kind)
        if key is None:
            return None
        return await self._sessions.submit(key)

    async def _flush_sessions(
        self, keys: list[tuple[bytes, session_q.Kind]]
    ) -> list[Found | BaseException | None]:
        async with self.pool.acquire() as conn:
            found = await self.sessions.authenticate_many(conn, keys, self.clock())
        return [found.get(k) for k in keys]

    # -- subscribers ----------------------------------------------------------------------

    def _check_capacity(self) -> None:
        """``busy`` before anything else when the hashing queue is full: under a flood the
        refusal costs no database round trip."""
        try:
            self.passwords.executor.check()
        except ApiError:
            self.metrics.password_busy.inc()
            raise

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        """Argon2 with no connection held; ``busy`` (counted) when the queue is full."""
        try:
            return await self.passwords.verify(password_hash, password)
        except ApiError as exc:
            if exc.kind is Kind.BUSY:
                self.metrics.password_busy.inc()
            raise

    async def login(
        self,
        *,
        account: str,
        password: str,
        captcha_id: str,
        captcha_answer: str,
        previous_token: str | None,
        client: str,
    ) -> LoginResult:
        self._check_capacity()
        await self.limits.subscriber_login(client=client, account=account)
        if self.captcha is not None and not await self.captcha.check(
            self.pool, captcha_id, captcha_answer
        ):
            self.metrics.captcha_failures.inc()
            raise ApiError(Kind.INVALID_CAPTCHA, "the captcha answer is wrong, used or expired")
        now = self.clock()
        async with self.pool.acquire() as conn:
            acc = await sub_q.account_by_name(conn, account)
        usable = acc is not None and not acc.locked
        ok = await self._verify(acc.password_hash if usable else None, password)

        async with self.pool.acquire() as conn, conn.transaction():
            if (
                acc is not None
                and usable
                and ok
                and await sub_q.record_success(conn, acc.id, password_hash=acc.password_hash)
            ):
                new = await self.sessions.create(
                    conn,
                    kind="subscriber",
                    now=now,
                    account_id=acc.id,
                    replaces=previous_token,
                )
                await audit.append(
                    conn,
                    actor=acc.account,
                    action="login_succeeded",
                    target=acc.account,
                    details={"client": client},
                    at=now,
                )
                self.metrics.logins.labels("subscriber").inc()
                return LoginResult(new, acc.must_change_password)

            # a wrong password, or a right one for an account locked (or reset) meanwhile
            self.metrics.login_failures.labels("subscriber").inc()
            locked_now = False
            if acc is None:
                failures = await sub_q.record_unknown_failure(conn, account, now=now)
                locked = failures >= self.max_failures
                reason = "unknown_account"
            else:
                f = await sub_q.record_failure(conn, acc.id, lock_at=self.max_failures, now=now)
                failures, locked, locked_now = f.failures, f.locked, f.locked_now
                reason = "locked" if locked and not locked_now else "wrong_password"
                if locked_now:
                    await session_q.delete_for_account(conn, acc.id)
            await audit.append(
                conn,
                actor=audit.ANONYMOUS,
                action="login_failed",
                target=account,
                details={"reason": reason, "failures": failures, "client": client},
                at=now,
            )
            if acc is None and failures == self.max_failures:
                locked_now = True  # unknown names lock alike (API.md): nothing tells them apart
            if locked_now:
                # API.md: the actor is the account, or anonymous for a name that is no account
                self.metrics.account_locks.labels("subscriber").inc()
                await audit.append(
                    conn,
                    actor=account if acc is not None else audit.ANONYMOUS,
                    action="account_locked",
                    target=account,
                    details={"failures": failures},
                    at=now,
                )
        if locked:
            raise ApiError(Kind.ACCOUNT_LOCKED, LOCKED)
        raise ApiError(Kind.INVALID_CREDENTIALS, BAD_CREDENTIALS)

    async def authenticate(self, token: str | None) -> SubscriberAuth:
        found = await self._session(token, "subscriber")
        if found is None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in first")
        session, row = found
        if session.account_id is None or row["a_id"] is None or row["locked_at"] is not None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in first")
        return SubscriberAuth(
            session, sub_q.account_from_record(row), sub_q.subscriber_from_record(row)
        )

    async def logout(self, auth: SubscriberAuth | OfficerAuth) -> None:
        await self.sessions.end(self.pool, auth.session.id_hash)

    async def change_password(
        self, auth: SubscriberAuth, *, old: str, new: str, client: str = ""
    ) -> None:
        # old-password guesses with a stolen session are limited, never counted to the lock
        self._check_capacity()
        await self.limits.password_change(client=client, account_id=auth.account.id)
        self.passwords.check_policy(new, old)
        ok = await self._verify(auth.account.password_hash, old)
        if not ok:  # not counted toward the lock: the caller already holds a session
            raise ApiError(Kind.INVALID_CREDENTIALS, "the old password is not correct")
        new_hash = await self.passwords.hash(new)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            current = await sub_q.account_by_id(conn, auth.account.id, for_update=True)
            if current is None or current.password_hash != auth.account.password_hash:
                raise ApiError(Kind.INVALID_CREDENTIALS, "the old password is not correct")
            await sub_q.set_password(
                conn, current.id, password_hash=new_hash, must_change=False, now=now
            )
            # other sessions of this account end; this one stays valid
            ended = await session_q.delete_for_account(
                conn, current.id, except_hash=auth.session.id_hash
            )
            await audit.append(
                conn,
                actor=current.account,
                action="password_changed",
                target=current.account,
                details={"forced": current.must_change_password, "other_sessions_ended": ended},
                at=now,
            )

    async def me(self, auth: SubscriberAuth) -> sub_q.SubscriberView:
        if auth.view is not None:  # loaded with the session in this request
            return auth.view
        async with self.pool.acquire() as conn:
            view = await sub_q.view_by_account_id(conn, auth.account.id)
        if view is None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in first")
        return view

    # -- RA officers ----------------------------------------------------------------------

    async def officer_login(
        self, *, login: str, password: str, previous_token: str | None, client: str
    ) -> NewSession:
        self._check_capacity()
        await self.limits.officer_login(client=client, login=login)
        now = self.clock()
        async with self.pool.acquire() as conn:
            officer = await officer_q.by_login(conn, login)
        usable = officer is not None and not officer.locked
        ok = await self._verify(officer.password_hash if usable else None, password)

        async with self.pool.acquire() as conn, conn.transaction():
            if (
                officer is not None
                and usable
                and ok
                and await officer_q.record_success(
                    conn, officer.id, password_hash=officer.password_hash
                )
            ):
                new = await self.sessions.create(
                    conn, kind="officer", now=now, officer_id=officer.id, replaces=previous_token
                )
                await audit.append(
                    conn,
                    actor=officer.login,
                    action="officer_login_succeeded",
                    target=officer.login,
                    details={"client": client},
                    at=now,
                )
                self.metrics.logins.labels("officer").inc()
                return new
            self.metrics.login_failures.labels("officer").inc()
            locked_now = False
            if officer is None:
                # unknown logins lock on the same attempt: the answers never tell which exist
                failures = await officer_q.record_unknown_failure(conn, login, now=now)
                locked = failures >= self.officer_max_failures
                reason = "unknown"
            else:
                f = await officer_q.record_failure(
                    conn, officer.id, lock_at=self.officer_max_failures, now=now
                )
                failures, locked, locked_now = f.failures, f.locked, f.locked_now
                reason = "locked" if locked and not locked_now else "wrong_password"
                if locked_now:
                    await session_q.delete_for_officer(conn, officer.id)
            await audit.append(
                conn,
                actor=audit.ANONYMOUS,
                action="officer_login_failed",
                target=login,
                details={"failures": failures, "client": client, "reason": reason},
                at=now,
            )
            if locked_now:
                self.metrics.account_locks.labels("officer").inc()
                await audit.append(
                    conn,
                    actor=login,
                    action="officer_locked",
                    target=login,
                    details={"failures": failures},
                    at=now,
                )
        if locked:
            raise ApiError(Kind.ACCOUNT_LOCKED, LOCKED)
        raise ApiError(Kind.INVALID_CREDENTIALS, BAD_CREDENTIALS)

    async def authenticate_officer(
        self, token: str | None, *, second_factor_pending: bool = False
    ) -> OfficerAuth:
        """The officer of a complete session; with ``second_factor_pending`` also of a session
        whose second factor is still due (only the factor endpoints and logout ask for that)."""
        found = await self._session(token, "officer")
        if found is None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in as an RA officer first")
        session, row = found
        if session.officer_id is None or row["o_id"] is None or row["o_locked_at"] is not None:
            raise ApiError(Kind.UNAUTHENTICATED, "log in as an RA officer first")
        officer = officer_q.Officer(
            row["o_id"],
            row["o_login"],
            row["o_password_hash"],
            row["o_failed_attempts"],
            row["o_locked_at"],
        )
        state = row["officer_factor"]
        if state is not None and not second_factor_pending:
            raise ApiError(
                Kind.SECOND_FACTOR_REQUIRED, "complete the login with your second factor first"
            )
        return OfficerAuth(session, officer, state)
