"""Valid Taiwanese identity numbers for tests, computed here on their own (not with
``gateway.identity``), so a wrong check in the gateway cannot agree with a wrong generator."""

from __future__ import annotations

import secrets

_CODES = "ABCDEFGHJKLMNPQRSTUVXYWZIO"  # the letters in the order of their codes 10..35


def national_id(gender: str = "1") -> str:
    """A random 身分證統一編號 with a correct check digit."""
    letter = secrets.choice("ABCDEFGHJKLMNPQRSTUVXYWZIO")
    body = gender + "".join(secrets.choice("0123456789") for _ in range(7))
    code = 10 + _CODES.index(letter)
    total = code // 10 + (code % 10) * 9
    total += sum(int(d) * w for d, w in zip(body, (8, 7, 6, 5, 4, 3, 2, 1), strict=True))
    return f"{letter}{body}{(10 - total % 10) % 10}"


def company_number() -> str:
    """A random 統一編號 whose weighted digit sum is divisible by 10 (valid under either rule)."""
    while True:
        digits = "".join(secrets.choice("0123456789") for _ in range(8))
        total = sum(
            sum(divmod(int(d) * w, 10))
            for d, w in zip(digits, (1, 2, 1, 2, 1, 2, 4, 1), strict=True)
        )
        if total % 10 == 0 and digits[6] != "7":
            return digits
