"""The ``[token]`` and ``[roottoken]`` sections: which PKCS#11 module, token and PIN a component
opens. Parsed here, without ``pkcs11``, so that a PIN file that cannot be read stops the start
before any worker tries the token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.loader import ConfigError, RawConfig, read_secret
from config.sections import Section, parse_section


@dataclass(frozen=True)
class TokenConfig:
    """Where the CA keys live: a PKCS#11 module, a token label and the user PIN."""

    module: Path
    label: str
    pin: str
    so_pin: str | None

    def __repr__(self) -> str:  # never print PINs, even by accident
        return f"TokenConfig(module={str(self.module)!r}, label={self.label!r}, pin=***)"


class TokenSection(Section):
    """``[token]`` / ``[roottoken]`` as the file has them; PINs only as a file or a variable."""

    module: str = ""  # the PKCS#11 module (a shared library)
    label: str = ""
    pin_file: str = ""
    pin_env: str = ""
    so_pin_file: str = ""
    so_pin_env: str = ""

    def secrets(self) -> dict[str, str]:
        """The ``*_file`` / ``*_env`` keys, as ``read_secret`` takes them."""
        return {k: getattr(self, k) for k in ("pin_file", "pin_env", "so_pin_file", "so_pin_env")}


ONLINE_TOKEN = "token"  # noqa: S105 -- a section name: issuing CA + OCSP responder keys
ROOT_TOKEN = "roottoken"  # noqa: S105 -- a section name: the root key, ceremonies only


def token_section(cfg: RawConfig, section: str = ONLINE_TOKEN) -> TokenSection:
    """The parsed section; module and label are required."""
    sec = parse_section(cfg, section, TokenSection)
    if not sec.module or not sec.label:
        raise ConfigError(f"[{section}]: module and label are required")
    return sec


def token_config(cfg: RawConfig, section: str = ONLINE_TOKEN) -> TokenConfig:
    """The token of ``section``: ``[token]`` (online) or ``[roottoken]`` (offline root)."""
    sec = token_section(cfg, section)
    pin = read_secret(cfg, sec.secrets(), "pin", section)
    assert pin is not None
    so_pin = read_secret(cfg, sec.secrets(), "so_pin", section, required=False)
    return TokenConfig(module=Path(sec.module), label=sec.label, pin=pin, so_pin=so_pin)
