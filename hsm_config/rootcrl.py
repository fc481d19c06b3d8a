"""The root CA's CRL: signed in a ceremony on the offline root token, served by the gateway.

The root key never comes online, so its CRL cannot be re-signed every few minutes like an issuing
CA's: it carries a long nextUpdate (``[ca] root_crl_days``, 365 by default) and lists the issuing
CA certificates the root has revoked. The security officer signs a new one with
``ca-keys root-crl`` (to revoke an issuing CA, or before the current one's nextUpdate); the key
ceremony signs the first, empty one. The signed CRL is kept next to the root certificate as
``<root>.crl`` (DER), where the gateway reads and serves it as it is (it never signs it), and
what it lists is kept in ``<root>.crl-state.toml`` so that every new CRL lists every earlier
revocation with a higher CRL number.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from config.loader import ConfigError, RawConfig
from config.manifest import IssuerEntry, ca_dir, load_manifest
from config.sections import CaSection, parse_section
from hsm_config import keygen
from hsm_config.keygen import KeysError
from signer.hsm.keys import TokenPrivateKey, signature_hash

Out = Callable[[str], None]
DER = Encoding.DER
# RFC 5280 reason codes that make sense for a CA certificate revoked by its root
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}


@dataclass(frozen=True)
class RevokedCa:
    """One issuing CA certificate the root has revoked."""

    issuer: str
    serial: int
    revoked_at: dt.datetime
    reason: str


@dataclass(frozen=True)
class CrlState:
    crl_number: int
    revoked: tuple[RevokedCa, ...]


def state_path(entry: IssuerEntry) -> Path:
    return entry.certificate_path.with_name(f"{entry.name}.crl-state.toml")


def crl_days(cfg: RawConfig) -> int:
    """``[ca] root_crl_days``; out of 1..3660 days stops the ceremony (exit 2)."""
    try:
        return parse_section(cfg, "ca", CaSection).root_crl_days
    except ConfigError as exc:
        raise KeysError(str(exc), 2) from None


def load_state(entry: IssuerEntry) -> CrlState:
    path = state_path(entry)
    if not path.exists():
        return CrlState(0, ())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        revoked = tuple(
            RevokedCa(
                str(r["issuer"]),
                int(str(r["serial"]), 16),
                dt.datetime.fromisoformat(str(r["revoked_at"])),
                str(r["reason"]),
            )
            for r in data.get("revoked", [])
        )
        return CrlState(int(data["crl_number"]), revoked)
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise KeysError(f"{path}: unreadable root CRL state ({type(exc).__name__})") from None


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def save_state(entry: IssuerEntry, state: CrlState) -> None:
    doc: dict[str, Any] = {
        "crl_number": state.crl_number,
        "revoked": [
            {
                "issuer": r.issuer,
                "serial": format(r.serial, "x"),
                "revoked_at": r.revoked_at.isoformat(),
                "reason": r.reason,
            }
            for r in state.revoked
        ],
    }
    header = "# Written by ca-keys: what the root's CRL lists. Do not edit.\n"
    _write_atomically(state_path(entry), (header + tomli_w.dumps(doc)).encode())


def build_crl(
    root_key: TokenPrivateKey,
    root_cert: x509.Certificate,
    state: CrlState,
    now: dt.datetime,
    days: int,
) -> x509.CertificateRevocationList:
    """Sign on the root token; checked against the root certificate before anyone sees it."""
    if root_cert.public_key() != root_key.public_key():
        raise KeysError("the root certificate does not match the root key on the token")
    revoked = []
    for r in state.revoked:
        b = x509.RevokedCertificateBuilder().serial_number(r.serial).revocation_date(r.revoked_at)
        if r.reason != "unspecified":  # RFC 5280 5.3.1: omit rather than unspecified
            b = b.add_extension(x509.CRLReason(REASONS[r.reason]), critical=False)
        revoked.append(b.build())
    this_update = now.replace(microsecond=0)
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=root_cert.subject,
        last_update=this_update,
        next_update=this_update + dt.timedelta(days=days),
        extensions=[
            x509.Extension(
                x509.oid.ExtensionOID.CRL_NUMBER, False, x509.CRLNumber(state.crl_number)
            ),
            x509.Extension(
                x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_cert.public_key()),  # type: ignore[arg-type]
            ),
        ],
        revoked_certificates=revoked,
    )
    crl = builder.sign(root_key, signature_hash(root_key.public_key()))
    if not crl.is_signature_valid(root_cert.public_key()):  # type: ignore[arg-type]
        raise KeysError("the root CRL signed on the token does not verify")
    return crl


FIRST = CrlState(1, ())


def first_crl(
    cfg: RawConfig,
    root_key: TokenPrivateKey,
    root_cert: x509.Certificate,
    root_name: str,
    now: dt.datetime,
) -> bytes:
    """The key ceremony's CRL: number 1, nothing revoked (DER)."""
    return build_crl(root_key, root_cert, FIRST, now, crl_days(cfg)).public_bytes(DER)


def store(entry: IssuerEntry, state: CrlState, der: bytes, out: Out) -> None:
    """Keep the CRL where the gateway serves it from, and what it lists for the next one."""
    save_state(entry, state)
    _write_atomically(entry.crl_path, der)
    crl = x509.load_der_x509_crl(der)
    out(
        f"root CRL {entry.name}: number {state.crl_number}, {len(state.revoked)} revoked, "
        f"next update {crl.next_update_utc:%Y-%m-%d}, written to {entry.crl_path}"
    )


def sign_root_crl(
    cfg: RawConfig,
    revoke: list[str],
    reason: str = "unspecified",
    root_name: str | None = None,
    days: int | None = None,
    out: Out = print,
    now: dt.datetime | None = None,
) -> IssuerEntry:
    """``ca-keys root-crl``: a new root CRL listing every earlier revocation plus ``revoke``
    (issuing CA names of the manifest), signed on the root token."""
    now = now if now is not None else dt.datetime.now(dt.UTC)
    if reason not in REASONS:
        raise KeysError(f"unknown reason {reason!r} (choose from {', '.join(REASONS)})", 2)
    entries = load_manifest(ca_dir(cfg).resolve() / "issuers.toml")
    by_name = {e.name: e for e in entries}
    if root_name is None:
        active = next((e for e in entries if e.active), None)
        root_name = active.parent if active is not None else None
    root = by_name.get(root_name or "")
    if root is None or root.role != "root":
        raise KeysError(f"no root CA {root_name!r} in the manifest", 2)
    state = load_state(root)
    listed = {r.serial for r in state.revoked}
    added: list[RevokedCa] = []
    for name in revoke:
        target = by_name.get(name)
        if target is None or target.role != "issuing" or target.parent != root.name:
            raise KeysError(f"{name!r} is not an issuing CA of {root.name} in the manifest", 2)
        serial = target.load_certificate().serial_number
        if serial in listed:
            raise KeysError(f"{name!r} is already revoked in the root CRL", 2)
        added.append(RevokedCa(name, serial, now.replace(microsecond=0), reason))
        listed.add(serial)
    next_state = CrlState(state.crl_number + 1, state.revoked + tuple(added))
    root_cert = root.load_certificate()
    with keygen.open_token(keygen.load_root_token_config(cfg), rw=False) as handle:
        key = handle.signing_key(root.key_label)
        crl = build_crl(key, root_cert, next_state, now, days or crl_days(cfg))
    for r in added:
        out(f"revoked issuing CA {r.issuer} (serial {r.serial:x}, {r.reason})")
    store(root, next_state, crl.public_bytes(DER), out)
    return root
