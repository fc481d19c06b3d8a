"""The audit key: a signing key on the online token that only signs checkpoints of the audit
chain's head (``signer/checkpoints.py``), never certificates.

``ca-keys audit-key`` makes it, with the parameters from the reviewed configuration file
(``[ca] audit_key_label``, ``audit_key_type``): it refuses a label already on the token and an
existing public key file, test-signs, writes the public key (PEM, SubjectPublicKeyInfo) to
``<[ca] dir>/<label>.pub.pem`` and prints its fingerprint. Verification (``ca-admin audit
verify``) needs only that file, never the token. The dev ceremony calls ``ensure_audit_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsm_config.config import RawConfig
from hsm_config.manifest import ca_dir

DEFAULT_LABEL = "audit-1"
DEFAULT_TYPE = "p256"
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def audit_key_label(cfg: RawConfig) -> str:
    return str(cfg.section("ca").get("audit_key_label", DEFAULT_LABEL))


def audit_public_key_path(cfg: RawConfig) -> Path:
    """Where the audit key's public half is recorded (derived from the label)."""
    return ca_dir(cfg).resolve() / f"{audit_key_label(cfg)}.pub.pem"


def load_public_key(path: Path) -> PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"{path}: not an RSA or EC public key")
    return key


def generate_audit_key(cfg: RawConfig, out: Callable[[str], None] = print) -> Path:
    """Generate the audit key on the token and record its public key; never overwrites."""
    from hsm_config import journal, keygen

    label = audit_key_label(cfg)
    key_type = str(cfg.section("ca").get("audit_key_type", DEFAULT_TYPE))
    keygen.key_spec(key_type)
    path = audit_public_key_path(cfg)
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
    out(f"audit key {label!r} ({key_type}) id {key.key_id.hex()}")
    out(f"  public key SHA-256  {key.fingerprint}")
    out(f"  public key written  {path}")
    journal.record(
        cfg, "audit_key_generated", label, {"key_type": key_type, "fingerprint": key.fingerprint}
    )
    return path


def ensure_audit_key(cfg: RawConfig, out: Callable[[str], None] = print) -> None:
    """The development set-up: make the audit key once (kept when its public key exists)."""
    if not audit_public_key_path(cfg).exists():
        generate_audit_key(cfg, out)
