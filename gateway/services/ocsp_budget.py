"""What keeps anonymous OCSP traffic from driving the token: a budget of fresh signatures per
gateway, and a cache of the answers for serials this CA never issued.

OCSP is public and unauthenticated. Every request with a nonce, for a certificate without a
stored pre-signed answer, or for a random serial would otherwise cost a signature on the token
at the price of issuance. So:

* ``TokenBucket``: fresh signatures are taken from a bucket refilled at ``[gateway]
  ocsp_fresh_per_second`` (default 50; 0: never sign on request) holding at most
  ``ocsp_fresh_burst`` (default: one second's worth). Beyond it the responder serves the stored
  answer without the nonce (RFC 8954 lets a responder ignore it) or ``tryLater``.
* ``UnknownCache``: a bounded LRU of signed ``unknown`` answers per (issuer, serial): asking
  again for a serial that was never issued costs no signature until the answer nears its
  nextUpdate. The database is asked first on every request, so a serial issued since is never
  answered from here.

Both live in one gateway process: N gateways sign at most N times the budget, and the signer
serves these signatures in its bulk lane, below issuance.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

UNKNOWN_CACHE_SIZE = 4096  # answers of about 1.5 KB each (the responder certificate included)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        self.rate = float(rate)
        self.burst = float(burst if rate > 0 else 0)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()

    def take(self) -> bool:
        """One token if there is one (no waiting: a client over the budget gets its answer
        now, from what is stored, or ``tryLater``)."""
        if self.rate <= 0:
            return False
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class UnknownCache:
    """Signed ``unknown`` answers by (issuer id, serial), least recently used dropped first."""

    def __init__(self, size: int = UNKNOWN_CACHE_SIZE, margin_seconds: float = 60.0) -> None:
        self.size = size
        self.margin_seconds = margin_seconds  # never serve one about to expire
        self._items: OrderedDict[tuple[int, int], tuple[bytes, datetime, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, issuer_id: int, serial: int, now: datetime) -> bytes | None:
        key = (issuer_id, serial)
        item = self._items.get(key)
        if item is None:
            return None
        der, this_update, next_update = item
        if this_update > now or (next_update - now).total_seconds() <= self.margin_seconds:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return der

    def put(
        self, issuer_id: int, serial: int, der: bytes, this_update: datetime, next_update: datetime
    ) -> None:
        self._items[(issuer_id, serial)] = (der, this_update, next_update)
        self._items.move_to_end((issuer_id, serial))
        while len(self._items) > self.size:
            self._items.popitem(last=False)
