"""The ``[signer]`` keys of the Unix socket's boundary: parsed strictly, names or numbers."""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
from pathlib import Path

import pytest

from config.loader import ConfigError, load
from signer.config import load_signer_config
from tests.support.signer_proc import running_signer


def signer_cfg(config: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_signer_config(
        load(config, environ={f"CA_SIGNER_{k.upper()}": v for k, v in env.items()})
    )


def test_defaults_allow_only_root_and_the_signer_itself(ca_config: Path) -> None:
    scfg = signer_cfg(ca_config)
    assert scfg.socket_mode == 0o660 and scfg.socket_gid is None
    assert scfg.allowed_uids == frozenset() and scfg.allowed_gids == frozenset()


def test_users_and_groups_by_name_or_number(ca_config: Path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    scfg = signer_cfg(
        ca_config,
        allowed_uids=f"{me}, 4321",
        allowed_gids=f"{group},77",
        socket_group=group,
        socket_mode="0600",
    )
    assert scfg.allowed_uids == frozenset({os.geteuid(), 4321})
    assert scfg.allowed_gids == frozenset({os.getegid(), 77})
    assert scfg.socket_gid == os.getegid() and scfg.socket_mode == 0o600


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("allowed_uids", "no-such-user-here"),
        ("allowed_gids", "no-such-group-here"),
        ("socket_group", "no-such-group-here"),
        ("socket_mode", "0999"),
        ("socket_mode", "1777"),
    ],
)
def test_unknown_names_and_bad_modes_stop_the_start(ca_config: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        signer_cfg(ca_config, **{key: value})


def test_a_signer_sharing_its_account_warns_once_at_start(ca_config: Path, tmp_path: Path) -> None:
    log = tmp_path / "signer.log"
    env = {"HSM_CA_SHARED_IDENTITY": "1"}  # what `make run` without root sets
    with running_signer(ca_config, workers=1, env=env, log=log):
        pass
    lines = [
        json.loads(line) for line in log.read_text().splitlines() if "identity boundary off" in line
    ]
    assert len(lines) == 1 and lines[0]["level"] == "warning", lines


def test_the_gateway_warns_once_when_it_can_read_the_token_pin(
    ca_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.cli import _warn_if_shared_identity

    with caplog.at_level(logging.WARNING, logger="gateway"):
        _warn_if_shared_identity(load(ca_config, environ={}))
    warnings = [r for r in caplog.records if "identity boundary off" in r.getMessage()]
    assert len(warnings) == 1 and "token.pin" in warnings[0].getMessage()
