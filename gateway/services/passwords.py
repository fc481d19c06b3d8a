"""Argon2id hashing (off the event loop), the password policy and generated secrets."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import ApiError, Kind

# unambiguous: no 0/O/o, 1/l/I, no look-alikes
PASSWORD_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105
ACCOUNT_FIRST = "abcdefghjkmnpqrstuvwxyz"
ACCOUNT_REST = "abcdefghjkmnpqrstuvwxyz23456789"


class Passwords:
    def __init__(self, *, minimum: int, maximum: int, hasher: PasswordHasher | None = None):
        self.minimum = minimum
        self.maximum = maximum
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        # verified against when the account does not exist, so timing looks the same
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Constant work whether or not there is a real hash to check."""
        target = password_hash or self._dummy

        def run() -> bool:
            try:
                return self._hasher.verify(target, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(run)
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
        length = min(max(12, self.minimum), self.maximum)
        return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def generate_account_name() -> str:
    """Ten characters, not derived from anything about the subscriber."""
    return secrets.choice(ACCOUNT_FIRST) + "".join(
        secrets.choice(ACCOUNT_REST) for _ in range(9)
    )
