"""Argon2id hashing (off the event loop, in the bounded ``HashingExecutor``), the password
policy and generated secrets."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import ApiError, Kind
from gateway.services.hashing import HashingExecutor, default_workers

DEFAULT_QUEUE = 16

# unambiguous: no 0/O/o, 1/l/I, no look-alikes
PASSWORD_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105
ACCOUNT_FIRST = "abcdefghjkmnpqrstuvwxyz"
ACCOUNT_REST = "abcdefghjkmnpqrstuvwxyz23456789"


class Passwords:
    def __init__(
        self,
        *,
        minimum: int,
        maximum: int,
        hasher: PasswordHasher | None = None,
        executor: HashingExecutor | None = None,
    ):
        self.minimum = minimum
        self.maximum = maximum
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self.executor = executor or HashingExecutor(workers=default_workers(), queue=DEFAULT_QUEUE)
        # verified against when the account does not exist, so timing looks the same
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """Hash a new password (registration, reset, change): waits for a hashing thread,
        never refused, since only an authenticated caller gets here."""
        return await self.executor.run(lambda: self._hasher.hash(password), bounded=False)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Constant work whether or not there is a real hash to check. Raises ``busy`` at once
        when the hashing queue is full; the caller must hold no database connection."""
        target = password_hash or self._dummy

        def run() -> bool:
            try:
                return self._hasher.verify(target, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        ok = await self.executor.run(run)
        return ok and password_hash is not None

    def check_policy(self, new: str, old: str | None = None) -> None:
        n = len(new)  # Unicode code points
        if n < self.minimum or n > self.maximum:
            raise ApiError(
                Kind.PASSWORD_POLICY,
                f"the password must have {self.minimum} to {self.maximum} characters",
            )
        if old is not None and new == old:
            raise ApiError(Kind.PASSWORD_POLICY, "the new password must differ from the old one")

    def generate(self) -> str:
        """A password for the slip: 10-12 unambiguous characters (within the policy)."""
        return generate_password(min(max(12, self.minimum), self.maximum))


def generate_password(length: int) -> str:
    """A random password of unambiguous characters (slips, the first RA officer's)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def generate_account_name() -> str:
    """Ten characters, not derived from anything about the subscriber."""
    return secrets.choice(ACCOUNT_FIRST) + "".join(secrets.choice(ACCOUNT_REST) for _ in range(9))
