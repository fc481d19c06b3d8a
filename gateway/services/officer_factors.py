"""A second factor for RA officers: WebAuthn (security keys, platform passkeys) and TOTP.

The password login (``AccountService.officer_login``) stays as it is; right after it,
``gate`` marks the new session ``verify`` when the officer has a factor, ``enrol`` when the
officer has none and ``[gateway] officer_second_factor = "required"``, and leaves it complete
otherwise. A marked session reaches only the factor endpoints (``gateway.api.ra_factors``):

- ``verify``: the officer answers a WebAuthn challenge or gives a TOTP code; on success the
  session is replaced by a fresh complete one (new cookie, new CSRF token), so a session id
  planted before the second factor is worth nothing after it. Enrolling is not possible here:
  a password alone must not add a factor.
- ``enrol``: the officer enrols a factor; the enrolment proves possession of it as a login
  would, so it completes the login the same way.

Failed second-factor attempts are counted apart from wrong passwords (a right password resets
those) and lock the officer at the same threshold, so TOTP codes cannot be guessed at leisure
behind a known password; each is audited (``officer_second_factor_failed``). Challenges live
in PostgreSQL, bound to the session, single use (taken by the attempt that answers them,
successful or not) and short-lived.
WebAuthn signature counters must grow; a TOTP code is good once per time step.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
import pyotp
import webauthn
from webauthn.helpers import options_to_json_dict, parse_authentication_credential_json
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from db import audit
from db.queries import officer_factors as q
from db.queries import sessions as session_q
from gateway.clock import Clock
from gateway.errors import ApiError, Kind
from gateway.services.accounts import LOCKED, OfficerAuth
from gateway.services.sessions import NewSession, SessionStore

log = logging.getLogger("gateway.officer_factors")
Policy = Literal["optional", "required"]
POLICIES: tuple[Policy, ...] = ("optional", "required")
CHALLENGE_TTL = timedelta(minutes=3)  # longer than the browser's WebAuthn timeout below
WEBAUTHN_TIMEOUT_MS = 120_000
TOTP_WINDOW = 1  # time steps accepted either side of now: clocks drift, people type slowly
TOTP_DIGITS = 6
TOTP_INTERVAL = 30
FAILED = "the second factor was not accepted"


@dataclass(frozen=True)
class RelyingParty:
    """Who WebAuthn credentials are bound to: the host and origin of ``public_url``."""

    id: str
    origin: str
    name: str

    @classmethod
    def from_public_url(cls, public_url: str) -> RelyingParty:
        parts = urlsplit(public_url)
        host = parts.hostname or "localhost"
        return cls(id=host, origin=f"{parts.scheme}://{parts.netloc}", name=f"CA RA ({host})")


@dataclass(frozen=True)
class Enrolled:
    factor: q.Factor
    session: NewSession | None  # the completed login when enrolment happened in an enrol session


class OfficerFactors:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        clock: Clock,
        sessions: SessionStore,
        policy: Policy,
        public_url: str,
        officer_max_failures: int,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"officer_second_factor: one of {POLICIES}")
        self.pool = pool
        self.clock = clock
        self.sessions = sessions
        self.policy = policy
        self.rp = RelyingParty.from_public_url(public_url)
        self.officer_max_failures = officer_max_failures

    # -- after the password -------------------------------------------------------------------

    async def gate(self, new: NewSession) -> q.SessionState:
        """Mark a session the password login just made: what the officer must still do."""
        id_hash = self.sessions.key(new.token, "officer")
        assert id_hash is not None
        async with self.pool.acquire() as conn, conn.transaction():
            officer_id = await conn.fetchval(
                "SELECT officer_id FROM sessions WHERE id_hash = $1 FOR UPDATE", id_hash[0]
            )
            if officer_id is None:
                raise ApiError(Kind.UNAUTHENTICATED, "log in as an RA officer first")
            has = await q.count_for_officer(conn, officer_id) > 0
            state: q.SessionState = (
                "verify" if has else "enrol" if self.policy == "required" else None
            )
            if state is not None:
                await q.set_session_state(conn, id_hash[0], state)
        return state

    # -- listing -------------------------------------------------------------------------------

    async def list(self, auth: OfficerAuth) -> list[q.Factor]:
        async with self.pool.acquire() as conn:
            return await q.for_officer(conn, auth.officer.id)

    # -- enrolment -----------------------------------------------------------------------------

    def _may_enrol(self, auth: OfficerAuth) -> None:
        if auth.second_factor == "verify":
            raise ApiError(
                Kind.SECOND_FACTOR_REQUIRED,
                "complete the login with your second factor before enrolling another",
            )

    async def _challenge(self, auth: OfficerAuth, purpose: q.Purpose, challenge: bytes) -> str:
        now = self.clock()
        challenge_id = secrets.token_urlsafe(24)
        async with self.pool.acquire() as conn:
            await q.put_challenge(
                conn,
                challenge_id=challenge_id,
                session_hash=auth.session.id_hash,
                officer_id=auth.officer.id,
                purpose=purpose,
                challenge=challenge,
                now=now,
                expires_at=now + CHALLENGE_TTL,
            )
        return challenge_id

    async def webauthn_enrol_options(self, auth: OfficerAuth) -> tuple[str, dict[str, Any]]:
        """PublicKeyCredentialCreationOptions (JSON form) for ``navigator.credentials.create``;
        the officer's existing credentials are excluded."""
        self._may_enrol(auth)
        async with self.pool.acquire() as conn:
            existing = await q.for_officer(conn, auth.officer.id, kind="webauthn")
        challenge = secrets.token_bytes(32)
        options = webauthn.generate_registration_options(
            rp_id=self.rp.id,
            rp_name=self.rp.name,
            user_name=auth.officer.login,
            user_id=f"ra-officer-{auth.officer.id}".encode(),
            challenge=challenge,
            timeout=WEBAUTHN_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=f.credential_id)
                for f in existing
                if f.credential_id
            ],
        )
        challenge_id = await self._challenge(auth, "webauthn_enrol", challenge)
        return challenge_id, options_to_json_dict(options)

    async def webauthn_enrol(
        self, auth: OfficerAuth, *, challenge_id: str, credential: dict[str, Any], name: str
    ) -> Enrolled:
        self._may_enrol(auth)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            challenge = await q.take_challenge(
                conn,
                challenge_id=challenge_id,
                session_hash=auth.session.id_hash,
                purpose="webauthn_enrol",
                now=now,
            )
            verified = None
            duplicate = False
            if challenge is not None:
                try:
                    verified = webauthn.verify_registration_response(
                        credential=credential,
                        expected_challenge=challenge,
                        expected_rp_id=self.rp.id,
                        expected_origin=self.rp.origin,
                    )
                except Exception as exc:  # untrusted input into a parser: any failure refuses
                    log.info("WebAuthn registration refused: %s", exc)
            if verified is not None:
                try:
                    async with conn.transaction():
                        factor = await q.insert_webauthn(
                            conn,
                            officer_id=auth.officer.id,
                            name=name,
                            credential_id=verified.credential_id,
                            public_key=verified.credential_public_key,
                            sign_count=verified.sign_count,
                            now=now,
                        )
                except asyncpg.UniqueViolationError:
                    duplicate = True  # raised after the commit: the challenge stays used up
                else:
                    return await self._enrolled(conn, auth, factor, now)
        if duplicate:
            raise ApiError(Kind.DUPLICATE, "this authenticator is enrolled already")
        if challenge is None:  # committed: the challenge is used up
            raise ApiError(Kind.BAD_CHALLENGE, "unknown, used or expired challenge")
        raise ApiError(Kind.FACTOR_REJECTED, "the authenticator's answer was not accepted")

    async def totp_enrol_start(self, auth: OfficerAuth) -> tuple[str, str, str]:
        """A new TOTP secret (challenge id, base32 secret, otpauth:// URI). It becomes a
        factor only when a code made from it comes back (``totp_enrol``)."""
        self._may_enrol(auth)
        secret = pyotp.random_base32(32)
        challenge_id = await self._challenge(auth, "totp_enrol", secret.encode("ascii"))
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL).provisioning_uri(
            name=auth.officer.login, issuer_name=self.rp.name
        )
        return challenge_id, secret, uri

    async def totp_enrol(
        self, auth: OfficerAuth, *, challenge_id: str, code: str, name: str
    ) -> Enrolled:
        self._may_enrol(auth)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            raw = await q.take_challenge(
                conn,
                challenge_id=challenge_id,
                session_hash=auth.session.id_hash,
                purpose="totp_enrol",
                now=now,
            )
            step = None if raw is None else totp_step(raw.decode("ascii"), code, now)
            if raw is not None and step is not None:
                factor = await q.insert_totp(
                    conn,
                    officer_id=auth.officer.id,
                    name=name,
                    secret=raw.decode("ascii"),
                    step=step,
                    now=now,
                )
                return await self._enrolled(conn, auth, factor, now)
        if raw is None:
            raise ApiError(Kind.BAD_CHALLENGE, "unknown, used or expired challenge")
        raise ApiError(Kind.FACTOR_REJECTED, "the code does not match the new secret")

    async def _enrolled(
        self, conn: asyncpg.Connection, auth: OfficerAuth, factor: q.Factor, now: datetime
    ) -> Enrolled:
        completes = auth.second_factor == "enrol"
        await audit.append(
            conn,
            actor=auth.officer.login,
            action="officer_factor_enrolled",
            target=auth.officer.login,
            details={
                "factor_id": factor.id,
                "kind": factor.kind,
                "name": factor.name,
                "completed_login": completes,
            },
            at=now,
        )
        new = await self._complete_session(conn, auth, now) if completes else None
        return Enrolled(factor, new)

    # -- login ---------------------------------------------------------------------------------

    def _must_verify(self, auth: OfficerAuth) -> None:
        if auth.second_factor != "verify":
            raise ApiError(
                Kind.SECOND_FACTOR_NOT_DUE, "this session does not wait for a second factor"
            )

    async def webauthn_login_options(self, auth: OfficerAuth) -> tuple[str, dict[str, Any]]:
        """PublicKeyCredentialRequestOptions (JSON form) for ``navigator.credentials.get``,
        limited to this officer's credentials."""
        self._must_verify(auth)
        async with self.pool.acquire() as conn:
            keys = await q.for_officer(conn, auth.officer.id, kind="webauthn")
        if not keys:
            raise ApiError(Kind.NOT_ENROLLED, "no WebAuthn authenticator is enrolled")
        challenge = secrets.token_bytes(32)
        options = webauthn.generate_authentication_options(
            rp_id=self.rp.id,
            challenge=challenge,
            timeout=WEBAUTHN_TIMEOUT_MS,
            allow_credentials=[
                PublicKeyCredentialDescriptor(id=k.credential_id) for k in keys if k.credential_id
            ],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        challenge_id = await self._challenge(auth, "webauthn_login", challenge)
        return challenge_id, options_to_json_dict(options)

    async def complete(
        self,
        auth: OfficerAuth,
        *,
        challenge_id: str | None = None,
        credential: dict[str, Any] | None = None,
        totp_code: str | None = None,
        client: str = "",
    ) -> NewSession:
        """Check the second factor of a ``verify`` session; a complete session replaces it.
        Exactly one of (challenge_id + credential) and totp_code is given (the model says)."""
        self._must_verify(auth)
        now = self.clock()
        officer = auth.officer
        async with self.pool.acquire() as conn, conn.transaction():
            if totp_code is not None:
                factor, reason = await self._check_totp(conn, officer.id, totp_code, now)
            else:
                factor, reason = await self._check_webauthn(
                    conn, auth, challenge_id or "", credential or {}, now
                )
            if factor is not None:
                new = await self._complete_session(conn, auth, now)
                await audit.append(
                    conn,
                    actor=officer.login,
                    action="officer_second_factor_succeeded",
                    target=officer.login,
                    details={"factor_id": factor.id, "kind": factor.kind, "client": client},
                    at=now,
                )
                return new
            failures, locked_now = await q.record_failure(
                conn, officer.id, lock_at=self.officer_max_failures, now=now
            )
            await audit.append(
                conn,
                actor=officer.login,
                action="officer_second_factor_failed",
                target=officer.login,
                details={
                    "reason": reason,
                    "failures": failures,
                    "kind": "totp" if totp_code is not None else "webauthn",
                    "client": client,
                },
                at=now,
            )
            if locked_now:
                await session_q.delete_for_officer(conn, officer.id)
                await audit.append(
                    conn,
                    actor=officer.login,
                    action="officer_locked",
                    target=officer.login,
                    details={"failures": failures},
                    at=now,
                )
        if locked_now:
            raise ApiError(Kind.ACCOUNT_LOCKED, LOCKED)
        if reason == "bad_challenge":
            raise ApiError(Kind.BAD_CHALLENGE, "unknown, used or expired challenge")
        raise ApiError(Kind.SECOND_FACTOR_FAILED, FAILED)

    async def _check_totp(
        self, conn: asyncpg.Connection, officer_id: int, code: str, now: datetime
    ) -> tuple[q.Factor | None, str]:
        factors = await q.for_officer(conn, officer_id, kind="totp", for_update=True)
        if not factors:
            return None, "no_totp_factor"
        for f in factors:
            assert f.totp_secret is not None
            step = totp_step(f.totp_secret, code, now)
            if step is None:
                continue
            if await q.used_totp(conn, f.id, step=step, now=now):
                return f, "ok"
            return None, "code_reused"
        return None, "wrong_code"

    async def _check_webauthn(
        self,
        conn: asyncpg.Connection,
        auth: OfficerAuth,
        challenge_id: str,
        credential: dict[str, Any],
        now: datetime,
    ) -> tuple[q.Factor | None, str]:
        challenge = await q.take_challenge(
            conn,
            challenge_id=challenge_id,
            session_hash=auth.session.id_hash,
            purpose="webauthn_login",
            now=now,
        )
        if challenge is None:
            return None, "bad_challenge"
        try:
            parsed = parse_authentication_credential_json(credential)
        except Exception:  # untrusted input: any parse failure is a refused assertion
            return None, "malformed_assertion"
        factor = await q.by_credential(conn, auth.officer.id, parsed.raw_id)
        if factor is None or factor.public_key is None:
            return None, "unknown_credential"
        try:
            verified = webauthn.verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                credential_public_key=factor.public_key,
                credential_current_sign_count=factor.sign_count,
            )
        except Exception as exc:  # a bad signature, origin, RP, counter: all refuse
            log.info("WebAuthn assertion refused: %s", exc)
            return None, "bad_assertion"
        if not await q.used_webauthn(
            conn, factor.id, old_count=factor.sign_count, new_count=verified.new_sign_count, now=now
        ):
            return None, "counter_race"
        return factor, "ok"

    async def _complete_session(
        self, conn: asyncpg.Connection, auth: OfficerAuth, now: datetime
    ) -> NewSession:
        """A fresh complete session replaces the marked one (its challenges go with it)."""
        await session_q.delete(conn, auth.session.id_hash)
        # the password step reset the password failures already (accounts.officer_login)
        await q.record_success(conn, auth.officer.id)
        return await self.sessions.create(conn, kind="officer", now=now, officer_id=auth.officer.id)

    async def purge_expired(self, now: datetime) -> int:
        async with self.pool.acquire() as conn:
            return await q.delete_expired_challenges(conn, now)


def totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (within ``TOTP_WINDOW`` of now) whose code is ``code``, else None."""
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)
    current = totp.timecode(now)
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
