"""The ceremony that makes a role key (``ca-keys audit-key`` / ``ca-keys cmp-key``, and the dev
ceremony): generated on the online token, test-signed, its public key recorded where
``signer/role_keys.py`` says and journaled. The description of the keys lives with the signer,
which uses them; making one needs the token, so it lives here with the other ceremonies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from config.loader import RawConfig
from hsm_config import journal, keygen
from signer.role_keys import RoleKey


def generate_role_key(role: RoleKey, cfg: RawConfig, out: Callable[[str], None] = print) -> Path:
    """Generate the key on the token and record its public key; never overwrites."""
    label, key_type = role.label(cfg), role.key_type(cfg)
    keygen.key_spec(key_type)
    path = role.public_key_path(cfg)
    if path.exists():
        raise keygen.KeysError(f"{path} already exists; a ceremony never overwrites outputs", 2)
    with keygen.open_token(keygen.load_token_config(cfg), rw=True) as handle:
        key = keygen.generate(handle, label, key_type)  # refuses a used label; test-signs
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with open(path, "xb") as fh:  # exclusive: never overwrite, even if raced
        fh.write(pem)
    out(f"{role.title} {label!r} ({key_type}) id {key.key_id.hex()}")
    out(f"  public key SHA-256  {key.fingerprint}")
    out(f"  public key written  {path}")
    journal.record(
        cfg, role.journal_action, label, {"key_type": key_type, "fingerprint": key.fingerprint}
    )
    return path


def ensure_role_key(role: RoleKey, cfg: RawConfig, out: Callable[[str], None] = print) -> None:
    """The development set-up: make the key once (kept when its public key exists)."""
    if not role.public_key_path(cfg).exists():
        generate_role_key(role, cfg, out)
