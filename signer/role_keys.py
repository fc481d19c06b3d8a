"""Keys on the online token that have one job each besides the CA keys: the audit key (signs
checkpoints of the audit chain's head, ``signer/checkpoints.py``) and the CMP protection key
(signs the CMP server's answers, ``signer/cmp_protection.py``). Neither signs certificates.

Each is made the same way, by ``ca-keys audit-key`` / ``ca-keys cmp-key`` with the parameters of
the reviewed configuration (``[ca] <name>_key_label``, ``<name>_key_type``): a used label or an
existing public key file is refused, the key is test-signed, its public key (PEM,
SubjectPublicKeyInfo) is written to ``<[ca] dir>/<label>.pub.pem`` and its fingerprint printed
and journaled. Whoever checks what it signed (``ca-admin audit verify``, the signer at start)
needs only that file, never the token. This module says which key and where its public key
is; making one is a ceremony (``hsm_config/role_keygen.py``), so it imports no ``pkcs11``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from config.loader import RawConfig
from config.manifest import ca_dir
from config.sections import CaSection, parse_section

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class RoleKey:
    """One such key: ``name`` picks its ``[ca]`` keys (``CaSection`` has their defaults),
    ``title`` is how output names it."""

    name: str
    title: str
    journal_action: str

    def label(self, cfg: RawConfig) -> str:
        return str(getattr(parse_section(cfg, "ca", CaSection), f"{self.name}_key_label"))

    def key_type(self, cfg: RawConfig) -> str:
        return str(getattr(parse_section(cfg, "ca", CaSection), f"{self.name}_key_type"))

    def public_key_path(self, cfg: RawConfig) -> Path:
        """Where the key's public half is recorded (derived from the label)."""
        return ca_dir(cfg).resolve() / f"{self.label(cfg)}.pub.pem"


def load_public_key(path: Path) -> PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"{path}: not an RSA or EC public key")
    return key


AUDIT = RoleKey("audit", "audit key", "audit_key_generated")
CMP = RoleKey("cmp", "CMP protection key", "cmp_key_generated")
