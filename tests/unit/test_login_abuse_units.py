"""Pieces of the login abuse defences that need no database: the source address (trusted
proxy header, IPv6 /64), [ratelimit] parsing, and the bounded hashing executor."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from config.loader import ConfigError, load
from gateway.config import LIMIT_KEYS, RateLimits, gateway_config
from gateway.errors import ApiError
from gateway.services.hashing import NICE, HashingExecutor
from gateway.services.ratelimit import address_key, key_hash, source_address

EXAMPLE = Path(__file__).resolve().parents[2] / "ca.example.toml"
PROXIED = RateLimits(proxy_header="X-Forwarded-For", trusted_proxies=("10.0.0.0/8", "::1"))


def test_address_key_groups_ipv6_by_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("") == ""  # a Unix socket peer: one bucket
    assert key_hash("login_per_address", "a") != key_hash("login_per_account", "a")


def test_source_is_the_peer_unless_a_trusted_proxy_says_otherwise() -> None:
    xff = {"X-Forwarded-For": "198.51.100.9"}
    assert source_address("203.0.113.5", xff, RateLimits()) == "203.0.113.5"  # off by default
    assert source_address("203.0.113.5", xff, PROXIED) == "203.0.113.5"  # peer not trusted
    assert source_address("10.1.2.3", xff, PROXIED) == "198.51.100.9"
    assert source_address("::1", xff, PROXIED) == "198.51.100.9"
    # the client may write anything left of what the proxies appended
    spoofed = {"X-Forwarded-For": "1.1.1.1, 198.51.100.9, 10.9.9.9"}
    assert source_address("10.1.2.3", spoofed, PROXIED) == "198.51.100.9"
    assert source_address("10.1.2.3", {"X-Forwarded-For": "junk, 10.9.9.9"}, PROXIED) == (
        "10.1.2.3"
    )
    assert source_address("10.1.2.3", {}, PROXIED) == "10.1.2.3"
    assert source_address(None, xff, PROXIED) == ""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ca.toml"
    p.write_text(text)
    return p


def test_example_has_every_limit_with_the_defaults() -> None:
    cfg = gateway_config(load(EXAMPLE, environ={}), environ={})
    assert cfg.ratelimit == RateLimits()
    text = EXAMPLE.read_text()
    for key in (
        *LIMIT_KEYS,
        "window_seconds",
        "proxy_header",
        "trusted_proxies",
        "password_workers",
        "password_queue",
        "housekeeping_seconds",
        "captcha_max_rows",
        "unknown_login_retention_hours",
        "unknown_login_max_rows",
    ):
        assert f"\n{key} =" in text, key


def test_ratelimit_section_parsing(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "[ratelimit]\nlogin_per_address = 0\nwindow_seconds = 30\n"
        'proxy_header = "X-Forwarded-For"\ntrusted_proxies = ["10.0.0.0/8"]\n',
    )
    cfg = gateway_config(load(p, environ={"CA_RATELIMIT_CAPTCHA_PER_ADDRESS": "7"}), environ={})
    assert cfg.ratelimit.login_per_address == 0
    assert cfg.ratelimit.captcha_per_address == 7
    assert cfg.ratelimit.window_seconds == 30
    assert cfg.ratelimit.trusted_proxies == ("10.0.0.0/8",)
    for bad in (
        "login_per_adress = 3",
        "login_per_account = -1",
        "window_seconds = 0",
        'proxy_header = "X-Forwarded-For"',
        'trusted_proxies = ["not-an-address"]',
    ):
        with pytest.raises(ConfigError):
            gateway_config(load(_write(tmp_path, f"[ratelimit]\n{bad}\n"), environ={}), environ={})


async def test_hashing_executor_refuses_at_once_when_full() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    ex = HashingExecutor(workers=1, queue=1)

    def block() -> int:
        started.release()
        release.wait(10)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    try:
        running = asyncio.ensure_future(ex.run(block))
        queued = asyncio.ensure_future(ex.run(block))
        await asyncio.to_thread(started.acquire)
        t0 = time.perf_counter()
        with pytest.raises(ApiError) as err:
            await ex.run(block)
        assert time.perf_counter() - t0 < 0.5  # at once, not after the queue
        assert (err.value.kind.value, err.value.status) == ("busy", 503)
        assert err.value.headers == {"Retry-After": "1"}
        with pytest.raises(ApiError):
            ex.check()
        assert ex.refused == 2
        # a waiter that gives up does not free the slot while its hash may still run
        running.cancel()
        await asyncio.sleep(0.05)
        assert ex.full
        unbounded = asyncio.ensure_future(ex.run(block, bounded=False))  # never refused
        release.set()
        priority = await queued
        assert priority == os.getpriority(os.PRIO_PROCESS, 0) + NICE  # hashing yields the CPU
        await unbounded
        for _ in range(100):
            if ex.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert ex.in_flight == 0 and not ex.full
    finally:
        release.set()
        ex.close()
