"""The ``[token]`` and ``[roottoken]`` sections: which PKCS#11 module, token and PIN a component
opens. Parsed here, without ``pkcs11``, so that a PIN file that cannot be read stops the start
before any worker tries the token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.loader import ConfigError, RawConfig, check_keys, read_secret


@dataclass(frozen=True)
class TokenConfig:
    """Where the CA keys live: a PKCS#11 module, a token label and the user PIN."""

    module: Path
    label: str
    pin: str
    so_pin: str | None

    def __repr__(self) -> str:  # never print PINs, even by accident
        return f"TokenConfig(module={str(self.module)!r}, label={self.label!r}, pin=***)"


TOKEN_KEYS = {"module", "label", "pin_file", "pin_env", "so_pin_file", "so_pin_env"}
ONLINE_TOKEN = "token"  # noqa: S105 -- a section name: issuing CA + OCSP responder keys
ROOT_TOKEN = "roottoken"  # noqa: S105 -- a section name: the root key, ceremonies only


def token_config(cfg: RawConfig, section: str = ONLINE_TOKEN) -> TokenConfig:
    """The token of ``section``: ``[token]`` (online) or ``[roottoken]`` (offline root)."""
    sec = cfg.section(section)
    check_keys(sec, TOKEN_KEYS, section)
    module = sec.get("module")
    label = sec.get("label")
    if not module or not label:
        raise ConfigError(f"[{section}]: module and label are required")
    pin = read_secret(cfg, sec, "pin", section)
    assert pin is not None
    so_pin = read_secret(cfg, sec, "so_pin", section, required=False)
    return TokenConfig(module=Path(str(module)), label=str(label), pin=pin, so_pin=so_pin)
