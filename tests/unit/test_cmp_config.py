"""The CMP keys of [gateway]: defaults, and a replay window shorter than the allowed clock skew
refused (a replayed message would pass once its pair is forgotten but its time still fits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import ConfigError, load
from gateway.config import gateway_config


def _config(tmp_path: Path, gateway: str) -> object:
    path = tmp_path / "ca.toml"
    path.write_text(f"[gateway]\n{gateway}\n", encoding="utf-8")
    return gateway_config(load(path, environ={}), environ={})


def test_cmp_defaults(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "")
    assert (
        cfg.cmp_max_skew_seconds,
        cfg.cmp_replay_window_seconds,  # type: ignore[attr-defined]
        cfg.cmp_secret_days,
    ) == (300, 900, 14)  # type: ignore[attr-defined]


def test_replay_window_not_below_skew(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cmp_replay_window_seconds"):
        _config(tmp_path, "cmp_max_skew_seconds = 600\ncmp_replay_window_seconds = 60")
    cfg = _config(tmp_path, "cmp_max_skew_seconds = 60\ncmp_replay_window_seconds = 60")
    assert cfg.cmp_replay_window_seconds == 60  # type: ignore[attr-defined]


def test_unknown_cmp_key_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _config(tmp_path, "cmp_secret = 1")
