"""The CMP protection key: a signing key on the online token that only signs the CMP server's
answers to signature-protected requests (``signer/cmp_protection.py``), never certificates.

Like the audit key: ``ca-keys cmp-key`` makes it with the parameters of the reviewed
configuration (``[ca] cmp_key_label``, ``cmp_key_type``), refuses a used label and an existing
public key file, test-signs, records the public key in ``<[ca] dir>/<label>.pub.pem`` and
prints its fingerprint; the dev ceremony calls ``ensure_cmp_key``. Its certificate is short
lived and issued by the signer itself under an internal profile (as the OCSP responder's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from hsm_config.config import RawConfig
from hsm_config.manifest import ca_dir

DEFAULT_LABEL = "cmp-1"
DEFAULT_TYPE = "p256"


def cmp_key_label(cfg: RawConfig) -> str:
    return str(cfg.section("ca").get("cmp_key_label", DEFAULT_LABEL))


def cmp_public_key_path(cfg: RawConfig) -> Path:
    """Where the CMP key's public half is recorded (derived from the label)."""
    return ca_dir(cfg).resolve() / f"{cmp_key_label(cfg)}.pub.pem"


def generate_cmp_key(cfg: RawConfig, out: Callable[[str], None] = print) -> Path:
    """Generate the CMP protection key on the token and record its public key; never
    overwrites."""
    from hsm_config import journal, keygen

    label = cmp_key_label(cfg)
    key_type = str(cfg.section("ca").get("cmp_key_type", DEFAULT_TYPE))
    keygen.key_spec(key_type)
    path = cmp_public_key_path(cfg)
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
    out(f"CMP protection key {label!r} ({key_type}) id {key.key_id.hex()}")
    out(f"  public key SHA-256  {key.fingerprint}")
    out(f"  public key written  {path}")
    journal.record(
        cfg, "cmp_key_generated", label, {"key_type": key_type, "fingerprint": key.fingerprint}
    )
    return path


def ensure_cmp_key(cfg: RawConfig, out: Callable[[str], None] = print) -> None:
    """The development set-up: make the CMP key once (kept when its public key exists)."""
    if not cmp_public_key_path(cfg).exists():
        generate_cmp_key(cfg, out)
