"""One TOML configuration file for every component, with environment overrides and secrets.

Every component reads the same file (``CA_CONFIG`` names it). Each top-level table is a section;
any scalar key of a section can be overridden by ``CA_<SECTION>_<KEY>`` (section names contain no
underscore, so the split is unambiguous). Secrets are never values in the file: a key ending in
``_file`` names a file holding the secret and a key ending in ``_env`` names an environment
variable, so they never show up in argv, in ``ps`` or in logs.

The package ``config`` imports nothing of the components (signer, gateway, hsm_config, db):
every one of them reads this file, so every import edge points towards it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The configuration is missing, malformed or inconsistent; the message says where."""


DEFAULT_CONFIG_ENV = "CA_CONFIG"


@dataclass(frozen=True)
class RawConfig:
    """The parsed file plus where it lives, so relative paths resolve against its folder."""

    path: Path
    data: Mapping[str, Any]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return dict(value)

    def resolve(self, value: str | os.PathLike[str]) -> Path:
        """Resolve a path written in the file relative to the file's own folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(DEFAULT_CONFIG_ENV)
    if env:
        return Path(env)
    return Path("var/ca.toml")


def _coerce(current: Any, text: str, where: str) -> Any:
    """Give an environment override the type of the value it replaces."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{where}: expected a boolean, got {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected an integer, got {text!r}") from exc
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected a number, got {text!r}") from exc
    if isinstance(current, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Apply ``CA_<SECTION>_<KEY>`` overrides to scalar keys of top-level sections."""
    environ = os.environ if environ is None else environ
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, text in environ.items():
        if not name.startswith("CA_") or name == DEFAULT_CONFIG_ENV:
            continue
        rest = name[3:].lower()
        section, sep, key = rest.partition("_")
        if not sep or not key:
            continue
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        current = table.get(key, "")
        if isinstance(current, dict):
            continue
        table[key] = _coerce(current, text, name)
    return out


def load(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> RawConfig:
    """Read the TOML file and apply environment overrides."""
    p = config_path(path)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {p} not found (set {DEFAULT_CONFIG_ENV})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return RawConfig(path=p.resolve(), data=apply_env_overrides(data, environ))


def read_secret_file(path: Path, where: str) -> str:
    """A secret kept in a file (stripped); a file that cannot be read is a ConfigError."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from exc


def read_secret(
    cfg: RawConfig, section: Mapping[str, Any], name: str, where: str, required: bool = True
) -> str | None:
    """Read secret ``name`` from ``<name>_env`` (an environment variable) or ``<name>_file``."""
    env_name = section.get(f"{name}_env")
    if env_name:
        value = os.environ.get(str(env_name))
        if value:
            return value
    file_name = section.get(f"{name}_file")
    if file_name:
        return read_secret_file(cfg.resolve(str(file_name)), f"[{where}] {name}_file")
    if required:
        raise ConfigError(f"[{where}]: set {name}_file or {name}_env (secrets are never inline)")
    return None
