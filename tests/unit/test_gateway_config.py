"""Strict parsing of [gateway], [database], [policy]; environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import ConfigError, load
from gateway import cli
from gateway.config import database_password, gateway_config, with_session_key

EXAMPLE = Path(__file__).resolve().parents[2] / "ca.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ca.toml"
    p.write_text(text)
    return p


def test_example_parses() -> None:
    cfg = gateway_config(load(EXAMPLE, environ={}), environ={})
    assert (cfg.port, cfg.captcha, cfg.password_min, cfg.password_max) == (8080, True, 6, 16)
    assert cfg.public_url == "http://127.0.0.1:8080"
    assert cfg.session_idle_timeout == 900 and cfg.session_absolute_timeout == 8 * 3600
    assert cfg.embedded_pg_dir == EXAMPLE.parent / "pg"
    assert cfg.signers[0].startswith("unix:/")


def test_env_overrides() -> None:
    env = {"CA_GATEWAY_PORT": "8081", "CA_GATEWAY_CAPTCHA": "off", "CA_POLICY_PASSWORD_MAX": "20"}
    cfg = gateway_config(load(EXAMPLE, environ=env), environ={})
    assert (cfg.port, cfg.captcha, cfg.password_max) == (8081, False, 20)
    assert cfg.public_url == "http://127.0.0.1:8081"


def test_officer_second_factor(tmp_path: Path) -> None:
    assert gateway_config(load(EXAMPLE, environ={}), environ={}).officer_second_factor == (
        "optional"
    )
    env = {"CA_GATEWAY_OFFICER_SECOND_FACTOR": "required"}
    cfg = gateway_config(load(EXAMPLE, environ=env), environ={})
    assert cfg.officer_second_factor == "required"
    p = _write(tmp_path, '[gateway]\nofficer_second_factor = "sometimes"\n')
    with pytest.raises(ConfigError, match="officer_second_factor"):
        gateway_config(load(p, environ={}), environ={})


def test_env_override_of_a_key_the_file_leaves_out(tmp_path: Path) -> None:
    """Such an override has no value to take its type from: integer settings still read it."""
    p = _write(tmp_path, "[gateway]\n")
    cfg = gateway_config(load(p, environ={"CA_GATEWAY_CAPTCHA_TTL": "60"}), environ={})
    assert cfg.captcha_ttl == 60
    with pytest.raises(ConfigError, match="captcha_ttl"):
        gateway_config(load(p, environ={"CA_GATEWAY_CAPTCHA_TTL": "soon"}), environ={})


def test_database_url_env_wins(tmp_path: Path) -> None:
    p = _write(tmp_path, '[database]\nurl = "postgresql://x/y"\n')
    cfg = gateway_config(load(p, environ={}), environ={"DATABASE_URL": "postgresql://a/b"})
    assert cfg.database_url == "postgresql://a/b" and cfg.embedded_pg_dir is None


@pytest.mark.parametrize(
    "text",
    [
        "[gateway]\nprot = 1\n",
        "[database]\nuri = ''\n",
        "[policy]\npassword_minimum = 3\n",
        "[gateway]\ncaptcha = 'maybe'\n",
        "[gateway]\nport = 'x'\n",
        "[gateway]\nport = 70000\n",
        "[policy]\npassword_min = 10\npassword_max = 8\n",
    ],
)
def test_strict(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        gateway_config(load(_write(tmp_path, text), environ={}), environ={})


def test_a_configured_session_key_file_must_be_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pepper is read at start: a configured file that is missing stops the start (it
    used to be ignored, and stored captcha answers went unpeppered without a word)."""
    p = _write(tmp_path, '[gateway]\nsession_key_file = "nope.key"\n')
    parsed = gateway_config(load(p, environ={}), environ={})  # --check-config reads no secret
    with pytest.raises(ConfigError, match=r"session_key_file: cannot read .*nope\.key"):
        with_session_key(parsed)
    assert cli.main(["--config", str(p)]) == 2
    assert "session_key_file: cannot read" in capsys.readouterr().err
    (tmp_path / "k.key").write_text("pepper\n")
    p = _write(tmp_path, '[gateway]\nsession_key_file = "k.key"\n')
    assert with_session_key(gateway_config(load(p, environ={}), environ={})).session_key == (
        b"pepper"
    )
    p = _write(tmp_path, "[gateway]\n")
    assert with_session_key(gateway_config(load(p, environ={}), environ={})).session_key is None


def test_a_configured_database_password_file_must_be_readable(tmp_path: Path) -> None:
    """Beside a DSN too: a configured password file that is missing is a start-up error (it
    used to be taken for "the DSN carries its own credentials")."""
    body = '[database]\nurl = "postgresql://db/ca"\npassword_file = "db.pw"\n'
    parsed = gateway_config(load(_write(tmp_path, body), environ={}), environ={})
    with pytest.raises(ConfigError, match=r"\[database\] password_file: cannot read .*db\.pw"):
        database_password(parsed)
    (tmp_path / "db.pw").write_text("secret\n")
    assert database_password(parsed) == "secret"
