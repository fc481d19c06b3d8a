"""The OCSP signature budget (token bucket), the cache of unknown answers and their config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.loader import ConfigError, load
from gateway.config import gateway_config
from gateway.services.ocsp_budget import TokenBucket, UnknownCache


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_grants_the_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 5, clock)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    clock.t += 0.5  # five more tokens
    assert sum(bucket.take() for _ in range(20)) == 5
    clock.t += 3600  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(100)) == 5
    # over any interval: at most burst + rate x seconds
    granted = 0
    for _ in range(1000):
        clock.t += 0.01
        granted += sum(bucket.take() for _ in range(3))
    assert granted <= 5 + 10 * 10


def test_zero_means_no_fresh_signature() -> None:
    bucket = TokenBucket(0, 50, Clock())
    assert not any(bucket.take() for _ in range(10))
    with pytest.raises(ValueError):
        TokenBucket(-1, 1)


def test_unknown_cache_is_bounded_and_expires() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cache = UnknownCache(size=3, margin_seconds=60)
    for serial in range(5):
        cache.put(1, serial, bytes([serial]), now, now + timedelta(hours=1))
    assert len(cache) == 3
    assert cache.get(1, 0, now) is None  # the oldest were dropped
    assert cache.get(1, 4, now) == b"\x04"
    assert cache.get(2, 4, now) is None  # per issuer
    assert cache.get(1, 4, now + timedelta(minutes=59, seconds=1)) is None  # near nextUpdate
    assert cache.get(1, 3, now - timedelta(seconds=1)) is None  # not yet valid (clock back)
    # a hit counts as use: the least recently used goes first
    cache = UnknownCache(size=2)
    cache.put(1, 1, b"a", now, now + timedelta(hours=1))
    cache.put(1, 2, b"b", now, now + timedelta(hours=1))
    assert cache.get(1, 1, now) == b"a"
    cache.put(1, 3, b"c", now, now + timedelta(hours=1))
    assert cache.get(1, 1, now) == b"a" and cache.get(1, 2, now) is None


def test_config_keys(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "ca.example.toml"
    cfg = gateway_config(load(example, environ={}), environ={})
    assert (cfg.ocsp_fresh_per_second, cfg.ocsp_fresh_burst) == (50, 50)
    p = tmp_path / "ca.toml"
    p.write_text("[gateway]\nocsp_fresh_per_second = 5\n")
    cfg = gateway_config(load(p, environ={}), environ={})
    assert (cfg.ocsp_fresh_per_second, cfg.ocsp_fresh_burst) == (5, 5)  # burst: one second
    p.write_text("[gateway]\nocsp_fresh_per_second = 0\nocsp_fresh_burst = 20\n")
    cfg = gateway_config(load(p, environ={}), environ={})
    assert (cfg.ocsp_fresh_per_second, cfg.ocsp_fresh_burst) == (0, 20)
    p.write_text("[gateway]\nocsp_fresh_per_second = -1\n")
    with pytest.raises(ConfigError):
        gateway_config(load(p, environ={}), environ={})
