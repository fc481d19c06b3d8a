"""The injected clock: services take ``clock`` instead of calling ``datetime.now`` so tests can
move time (renewal windows, lockouts, CRL dates) without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The production clock: aware UTC time."""
    return datetime.now(UTC)
