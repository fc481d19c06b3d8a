"""Rate limits per source address and per account, kept in PostgreSQL so gateways share them.

Four things an anonymous client (or a stolen session) can repeat cheaply and the server pays
for: subscriber logins and officer logins (an Argon2 verification each, and lock counting),
password changes (a guess of the old password each) and captchas (an image and a row each).
Each has a token bucket per source address and, where there is one, per account; the limits
are in ``[ratelimit]`` and ``0`` switches one off.

A limit is checked before anything else, and an attempt over it is not evaluated: no captcha
consumed, no Argon2, no failure counted. The lock stays what it was (API.md: rate limits must
not replace it): inside the limits, the 3rd (subscriber) / 5th (officer) consecutive failure
locks exactly as before.

The source address is the TCP peer, or, only when the peer is a configured trusted proxy, the
address that proxy put into ``proxy_header``. IPv6 sources count per /64, the block one
subscriber line usually gets, so that rotating through one's own addresses does not help.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable, Mapping

import asyncpg

from db.queries import ratelimit as q
from gateway.clock import Clock
from gateway.config import RateLimits
from gateway.errors import ApiError, Kind
from gateway.metrics import GatewayMetrics

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def source_address(peer: str | None, headers: Mapping[str, str], limits: RateLimits) -> str:
    """The client's address: the peer, or the rightmost address in ``proxy_header`` that is
    not itself a trusted proxy, when the peer is one (the proxy appends what it saw, so
    anything left of that the client may have written itself)."""
    peer = peer or ""
    if not limits.proxy_header:
        return peer
    trusted = _networks(limits.trusted_proxies)
    peer_ip = _parse(peer)
    if peer_ip is None or not any(peer_ip in n for n in trusted):
        return peer
    raw = headers.get(limits.proxy_header, "")
    hops = [h for h in (p.strip() for p in raw.split(",")) if h]
    for hop in reversed(hops):
        ip = _parse(hop)
        if ip is None:
            return peer  # a malformed header: believe nothing of it
        if not any(ip in n for n in trusted):
            return str(ip)
    return peer


def address_key(address: str) -> str:
    """What one source is for counting: an IPv4 address, an IPv6 /64, else the text."""
    ip = _parse(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def key_hash(scope: str, value: str) -> bytes:
    return hashlib.sha256(scope.encode() + b"\0" + value.encode()).digest()


class RateLimiter:
    def __init__(
        self, *, pool: asyncpg.Pool, clock: Clock, limits: RateLimits, metrics: GatewayMetrics
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.limits = limits
        self.metrics = metrics

    async def check(self, items: Iterable[tuple[str, str]]) -> None:
        """Take a token for each ``(limit name, value)`` whose limit is on; 429
        ``rate_limited`` with ``Retry-After`` when any bucket is empty."""
        window = self.limits.window_seconds
        takes: dict[bytes, q.Take] = {}
        for scope, value in items:
            limit = self.limits.limit(scope)
            if limit <= 0:
                continue
            h = key_hash(scope, value)
            takes[h] = q.Take(h, scope, float(limit), limit / window)
        if not takes:
            return
        levels = await q.take(self.pool, list(takes.values()), now=self.clock())
        denied = [lv for lv in levels if lv.denied]
        if not denied:
            return
        for lv in denied:
            self.metrics.rate_limited.labels(lv.scope).inc()
        # whole seconds, rounded up; 20.000000000000004 s of float arithmetic is 20
        wait = max(1, math.ceil(max(lv.retry_after for lv in denied) - 1e-6))
        raise ApiError(
            Kind.RATE_LIMITED,
            "too many attempts; try again later",
            headers={"Retry-After": str(wait)},
        )

    async def subscriber_login(self, *, client: str, account: str) -> None:
        await self.check(
            [("login_per_address", address_key(client)), ("login_per_account", account)]
        )

    async def officer_login(self, *, client: str, login: str) -> None:
        await self.check(
            [
                ("officer_login_per_address", address_key(client)),
                ("officer_login_per_account", login),
            ]
        )

    async def password_change(self, *, client: str, account_id: int) -> None:
        await self.check(
            [
                ("password_per_address", address_key(client)),
                ("password_per_account", str(account_id)),
            ]
        )

    async def captcha(self, *, client: str) -> None:
        await self.check([("captcha_per_address", address_key(client))])
