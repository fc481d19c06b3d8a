"""The issuer manifest: which CA keys on the token belong to which certificates.

The security officer's ceremonies write it (``ca-keys``), the signer and the gateway read it. It
lives in the CA folder (``[ca] dir``) as ``issuers.toml``::

    [issuers.root-1]
    role = "root"
    key_label = "root-1"
    certificate = "root-1.pem"

    [issuers.issuing-1]
    role = "issuing"
    key_label = "issuing-1"
    certificate = "issuing-1.pem"
    parent = "root-1"
    active = true
    ocsp_key_label = "issuing-1-ocsp"

A root's key lives on the offline root token (``[roottoken]``), which only ``ca-keys``
ceremonies open: the signer knows the root certificate (for the chain) but never its key. Its
CRL is signed in a ceremony and kept next to its certificate as ``<name>.crl`` (DER), which the
gateway serves as it is. Issuing CA keys and their OCSP responder keys (``ocsp_key_label``) live
on the online token (``[token]``).

Exactly one issuing CA is active: it signs new certificates. Rotated-out issuing CAs stay in the
manifest with ``active = false`` so CRLs and OCSP answers for their certificates can be signed.
This module must not import ``pkcs11``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography import x509

from config.loader import ConfigError, RawConfig
from config.sections import CaSection, Section, convert_table, parse_section

MANIFEST_NAME = "issuers.toml"
ROLES = ("root", "issuing")
NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")


class EntryTable(Section):
    """One ``[issuers.<name>]`` table as the file has it."""

    role: str  # "root" or "issuing"
    key_label: str
    certificate: str  # relative to the manifest's folder
    parent: str | None = None  # issuing CAs: the root that signed them
    active: bool = False  # the one issuing CA that signs new certificates
    ocsp_key_label: str = ""  # issuing CAs: the delegated OCSP responder's key

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError("role must be root or issuing")


@dataclass(frozen=True)
class IssuerEntry:
    name: str
    role: str  # "root" or "issuing"
    key_label: str
    certificate_path: Path
    parent: str | None
    active: bool
    ocsp_key_label: str | None = None  # issuing CAs: the delegated OCSP responder's key

    @property
    def crl_path(self) -> Path:
        """Where a root's ceremony-signed CRL is kept (DER), next to its certificate."""
        return self.certificate_path.with_name(f"{self.name}.crl")

    def load_certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"issuer {self.name}: cannot load {self.certificate_path}") from exc


def ca_dir(cfg: RawConfig) -> Path:
    """The CA folder, ``[ca] dir`` relative to the configuration file."""
    return cfg.resolve(parse_section(cfg, "ca", CaSection).dir)


def manifest_path(cfg: RawConfig) -> Path:
    return ca_dir(cfg) / MANIFEST_NAME


def load_manifest(path: Path) -> list[IssuerEntry]:
    """Read and check the manifest; a missing file means no ceremony has run yet."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    issuers = data.get("issuers", {})
    entries: list[IssuerEntry] = []
    for name, raw in issuers.items():
        if not NAME_RE.match(name):
            raise ConfigError(f"{path}: issuer name {name!r} must match [a-z0-9-]+")
        table = convert_table(raw, f"issuers.{name}", EntryTable, origin=str(path))
        entries.append(
            IssuerEntry(
                name=name,
                role=table.role,
                key_label=table.key_label,
                certificate_path=(path.parent / table.certificate).resolve(),
                parent=table.parent,
                active=table.active,
                ocsp_key_label=table.ocsp_key_label or None,
            )
        )
    actives = [e for e in entries if e.active]
    if entries and len(actives) != 1:
        raise ConfigError(f"{path}: exactly one issuer must be active, found {len(actives)}")
    if any(e.active and e.role != "issuing" for e in entries):
        raise ConfigError(f"{path}: the active issuer must be an issuing CA")
    return entries


def save_manifest(path: Path, entries: list[IssuerEntry]) -> None:
    """Write atomically, so a crash mid-ceremony never leaves a half-written manifest."""
    doc: dict[str, dict[str, dict[str, object]]] = {"issuers": {}}
    for e in entries:
        item: dict[str, object] = {
            "role": e.role,
            "key_label": e.key_label,
            "certificate": str(e.certificate_path.relative_to(path.parent.resolve())),
        }
        if e.parent:
            item["parent"] = e.parent
        if e.role == "issuing":
            item["active"] = e.active
        if e.ocsp_key_label:
            item["ocsp_key_label"] = e.ocsp_key_label
        doc["issuers"][e.name] = item
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(doc), encoding="utf-8")
    tmp.replace(path)
