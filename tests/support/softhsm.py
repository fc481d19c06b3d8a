"""Fresh SoftHSM tokens and complete CA set-ups for tests.

``tests/conftest.py`` points ``SOFTHSM2_CONF`` at one token folder for the whole pytest session;
every call here adds a token with a unique label inside it, so tests never share key material
and can run in any order. Tokens are initialised in-process (see ``hsm_config.keygen``), which
keeps every other open session of the test process valid.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from config.loader import load
from config.token import TokenConfig
from hsm_config import ceremony
from hsm_config.keygen import init_token

REPO = Path(__file__).resolve().parents[2]
SOFTHSM_MODULE = Path(os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so"))
EXAMPLE_CONFIG = REPO / "ca.example.toml"


def new_token(label: str | None = None) -> tuple[str, str, str]:
    """Initialise a fresh token in the session's token folder; returns (label, pin, so_pin)."""
    if "SOFTHSM2_CONF" not in os.environ:
        raise RuntimeError("SOFTHSM2_CONF is not set (tests/conftest.py sets it)")
    label = label or f"t-{secrets.token_hex(6)}"
    pin = secrets.token_hex(8)
    so_pin = secrets.token_hex(8)
    init_token(TokenConfig(module=SOFTHSM_MODULE, label=label, pin=pin, so_pin=so_pin))
    return label, pin, so_pin


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)


def write_config(
    tmp_dir: Path,
    key_type: str = "rsa2048",
    *,
    port: int = 8080,
    token: tuple[str, str, str],
    root_token: tuple[str, str, str] | None = None,
) -> Path:
    """``ca.example.toml`` adapted to ``tmp_dir``, the online ``token`` and the offline root's
    own ``root_token`` (a fresh one when not given); returns the config path."""
    tmp_dir = Path(tmp_dir).resolve()
    data: dict[str, Any] = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    secrets_dir = tmp_dir / "secrets"
    for section, prefix, (label, pin, so_pin) in (
        ("token", "token", token),
        ("roottoken", "root-token", root_token or new_token()),
    ):
        _write_secret(secrets_dir / f"{prefix}.pin", pin)
        _write_secret(secrets_dir / f"{prefix}.so-pin", so_pin)
        data[section].update(
            {
                "module": str(SOFTHSM_MODULE),
                "label": label,
                "pin_file": str(secrets_dir / f"{prefix}.pin"),
                "so_pin_file": str(secrets_dir / f"{prefix}.so-pin"),
            }
        )
    _write_secret(secrets_dir / "session.key", secrets.token_hex(32))
    data["ca"].update({"dir": str(tmp_dir / "ca"), "key_type": key_type})
    socket = tmp_dir / "run" / "signer.sock"
    socket.parent.mkdir(parents=True, exist_ok=True)
    data["signer"].update(
        {"socket": str(socket), "metrics_port": 0, "state_dir": str(tmp_dir / "signer-state")}
    )
    data["gateway"].update(
        {
            "port": port,
            "signers": [f"unix:{socket}"],
            "session_key_file": str(secrets_dir / "session.key"),
        }
    )
    path = tmp_dir / "ca.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def make_ca(tmp_dir: Path, key_type: str = "rsa2048", *, port: int = 8080) -> Path:
    """Fresh online and root tokens, a complete config and the dev ceremony (root-1 on the
    root token; issuing-1 and its OCSP responder key on the online token) done."""
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = write_config(tmp_dir, key_type, port=port, token=new_token())
    ceremony.dev_ceremony(load(path, environ={}), out=lambda _line: None)
    return path


CA_KEYS = REPO / ".venv" / "bin" / "ca-keys"


def run_ca_keys(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console script, as an operator would, with ``--config`` after the verb."""
    verb, *rest = args
    return subprocess.run(
        [str(CA_KEYS), verb, "--config", str(config), *rest],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def token_pins(config: Path) -> list[str]:
    """The PINs a config points to (both tokens), so tests can assert they never show up in
    output."""
    data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    pins = []
    for section in ("token", "roottoken"):
        for key in ("pin_file", "so_pin_file"):
            if data.get(section, {}).get(key):
                pins.append(Path(data[section][key]).read_text(encoding="utf-8").strip())
    return pins
