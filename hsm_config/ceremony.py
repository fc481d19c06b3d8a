"""The CA key ceremony and the issuing-key rotation, driven by reviewed input.

A ceremony reads its parameters from a TOML file a second person can review beforehand (see
``ceremony.example.toml``); the development set-up writes such a file (``ceremony-dev.toml``) and
runs the very same code path. The steps read top to bottom in ``run_ceremony``: check that
nothing would be overwritten, make keys on the tokens, build and sign the certificates, verify
them, store them on the tokens and in the CA folder, sign the first root CRL, then record them
in ``issuers.toml``.

Two tokens take part: the root key is made on, and only ever used from, the root token
(``[roottoken]``), which only these ceremonies open; the issuing CA key and its OCSP responder
key are made on the online token (``[token]``) that the signer uses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from cryptography import x509
from msgspec import Meta

from config.loader import ConfigError, RawConfig
from config.manifest import NAME_RE, IssuerEntry, ca_dir, load_manifest, save_manifest
from config.sections import CaSection, Section, convert_table, parse_section
from hsm_config import certs, keygen, rootcrl
from hsm_config.keygen import KeysError
from hsm_config.role_keygen import ensure_role_key
from signer import role_keys
from signer.config import public_url
from signer.hsm.token import TokenHandle

Out = Callable[[str], None]
DEV_CEREMONY_FILE = "ceremony-dev.toml"


class RootTable(Section):
    """``[root]`` of a ceremony file: every key required, none derived or defaulted silently."""

    name: Annotated[str, Meta(pattern=NAME_RE.pattern)]  # the issuer name in issuers.toml
    key_label: str
    key_type: str  # checked by keygen.key_spec
    subject: dict[str, str]  # C, ST, L, O, OU, CN; checked by certs.subject_name
    validity_days: Annotated[int, Meta(ge=1, le=36500)]


class IssuingTable(RootTable):
    """``[issuing]``: a root's keys plus ``path_len``, which can only be 0 (issuing CAs sign
    end entities only)."""

    path_len: Literal[0] = 0


class CeremonyFile(Section):
    """The file itself: the two tables and nothing else."""

    root: dict[str, Any]
    issuing: dict[str, Any]


@dataclass(frozen=True)
class CaSpec:
    """One CA of a ceremony, as reviewed: nothing here is derived or defaulted silently."""

    name: str
    key_label: str
    key_type: str
    subject: dict[str, str]
    validity_days: int
    path_len: int | None = None

    def to_toml(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "key_label": self.key_label,
            "key_type": self.key_type,
            "validity_days": self.validity_days,
        }
        if self.path_len is not None:
            doc["path_len"] = self.path_len
        doc["subject"] = dict(self.subject)
        return doc


@dataclass(frozen=True)
class CeremonySpec:
    root: CaSpec
    issuing: CaSpec


def _ca_spec(raw: dict[str, Any], path: Path, table: str) -> CaSpec:
    """One CA table of the file, converted by its schema and checked as keygen and certs will
    use it (key type, subject attributes), so a bad value stops the ceremony before a key."""
    schema: type[RootTable] = IssuingTable if table == "issuing" else RootTable
    sec = convert_table(raw, table, schema, origin=str(path))
    keygen.key_spec(sec.key_type)
    certs.subject_name(sec.subject)  # refuse unknown attributes and a missing CN now
    path_len = sec.path_len if isinstance(sec, IssuingTable) else None
    return CaSpec(
        sec.name, sec.key_label, sec.key_type, dict(sec.subject), sec.validity_days, path_len
    )


def load_spec(path: Path) -> CeremonySpec:
    """Parse a ceremony file strictly: a typo must stop the ceremony, not change it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeysError(f"cannot read ceremony file {path}: {exc.strerror}", 2) from None
    except tomllib.TOMLDecodeError as exc:
        raise KeysError(f"{path}: {exc}", 2) from None
    try:
        tables = convert_table(data, "ceremony", CeremonyFile, origin=str(path))
        spec = CeremonySpec(
            root=_ca_spec(tables.root, path, "root"),
            issuing=_ca_spec(tables.issuing, path, "issuing"),
        )
    except ConfigError as exc:
        raise KeysError(str(exc), 2) from None
    if spec.root.name == spec.issuing.name or spec.root.key_label == spec.issuing.key_label:
        raise KeysError(f"{path}: root and issuing need different names and key labels", 2)
    return spec


def write_spec(path: Path, spec: CeremonySpec) -> None:
    doc = {"root": spec.root.to_toml(), "issuing": spec.issuing.to_toml()}
    header = "# Ceremony parameters written by `ca-keys dev-ceremony`; review before use.\n"
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(header + tomli_w.dumps(doc))


# -- shared steps -----------------------------------------------------------------------------
def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _preflight(
    cfg: RawConfig,
    entries: list[IssuerEntry],
    cas: list[tuple[CaSpec, TokenHandle]],
    extra_labels: Sequence[tuple[str, TokenHandle]] = (),
) -> dict[str, Path]:
    """Refuse before touching anything: existing names, output files or key labels."""
    out_dir = ca_dir(cfg).resolve()
    known = {e.name for e in entries}
    paths: dict[str, Path] = {}
    for ca, handle in cas:
        if ca.name in known:
            raise KeysError(f"issuer {ca.name!r} is already in the manifest", 2)
        pem = out_dir / f"{ca.name}.pem"
        if pem.exists():
            raise KeysError(f"{pem} already exists; a ceremony never overwrites its outputs", 2)
        if keygen.label_in_use(handle.session, ca.key_label):
            raise KeysError(f"label {ca.key_label!r} already exists on the token", 2)
        if (out_dir / f"{ca.name}.crl").exists():
            raise KeysError(f"{out_dir / ca.name}.crl already exists; never overwritten", 2)
        paths[ca.name] = pem
    for label, handle in extra_labels:
        if keygen.label_in_use(handle.session, label):
            raise KeysError(f"label {label!r} already exists on the token", 2)
    return paths


def ocsp_key_label(issuing_label: str) -> str:
    """The delegated OCSP responder's key of an issuing CA, next to it on the online token."""
    return f"{issuing_label}-ocsp"


def _issuing_urls(cfg: RawConfig, root_name: str) -> dict[str, str]:
    """Where the issuing CA certificate says the root's CRL and certificate are served."""
    base = public_url(cfg)
    return {
        "root_crl_url": f"{base}/crl/{root_name}.crl",
        "root_cert_url": f"{base}/ca/{root_name}.crt",
    }


def _check_against_token(handle: TokenHandle, cert: x509.Certificate, label: str) -> None:
    if not certs.matches_public_key(cert, handle.find_public_key(label)):
        raise KeysError(f"certificate for {label!r} does not carry the token's public key")


def _write_pem(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:  # exclusive: never overwrite, even if raced
        fh.write(certs.to_pem(cert))


def _record(cfg: RawConfig, entries: list[IssuerEntry], new: list[IssuerEntry]) -> None:
    """Add the new issuers; the new issuing CA becomes the only active one."""
    kept = [dataclasses.replace(e, active=False) for e in entries]
    out_dir = ca_dir(cfg).resolve()
    save_manifest(out_dir / "issuers.toml", kept + new)


def _report(
    out: Out, role: str, ca: CaSpec, key: keygen.GeneratedKey, cert: x509.Certificate, pem: Path
) -> None:
    out(f"{role} {ca.name}: key {key.label!r} ({key.key_type}) id {key.key_id.hex()}")
    out(f"  public key SHA-256  {key.fingerprint}")
    out(f"  certificate         {certs.describe_cert(cert)}")
    out(f"  certificate SHA-256 {certs.fingerprint(cert)}")
    out(f"  written to          {pem}")


def _report_responder_key(out: Out, key: keygen.GeneratedKey) -> None:
    out(f"  OCSP responder key  {key.label!r} ({key.key_type}) id {key.key_id.hex()}")
    out(f"  responder key SHA-256 {key.fingerprint}")


def _cleanup(handle: TokenHandle, labels: list[str], out: Out) -> None:
    """A failed ceremony removes the keys it made, so a corrected re-run can use the labels."""
    for label in labels:
        try:
            keygen.destroy_key_pair(handle.session, label)
            out(f"removed key {label!r} made by the failed ceremony")
        except Exception as exc:  # best effort: report and keep going
            out(f"could not remove key {label!r}: {type(exc).__name__}")


# -- the ceremony -------------------------------------------------------------------------------
def run_ceremony(
    cfg: RawConfig, spec: CeremonySpec, out: Out = print, now: dt.datetime | None = None
) -> list[IssuerEntry]:
    """Root key + self-signed root on the root token; issuing key + issuing certificate and the
    issuing CA's OCSP responder key on the online token; the first (empty) root CRL."""
    now = _now(now)
    entries = load_manifest(ca_dir(cfg).resolve() / "issuers.toml")
    root_tcfg = keygen.load_root_token_config(cfg)
    tcfg = keygen.load_token_config(cfg)
    responder_label = ocsp_key_label(spec.issuing.key_label)
    with (
        keygen.open_token(root_tcfg, rw=True) as root_handle,
        keygen.open_token(tcfg, rw=True) as handle,
    ):
        # 1. nothing may exist yet
        paths = _preflight(
            cfg,
            entries,
            [(spec.root, root_handle), (spec.issuing, handle)],
            [(responder_label, handle)],
        )
        made_root: list[str] = []
        made: list[str] = []
        try:
            # 2. root key and self-signed root certificate, on the root token
            root_key = keygen.generate(root_handle, spec.root.key_label, spec.root.key_type)
            made_root.append(root_key.label)
            root_signer = root_handle.signing_key(root_key.label, root_key.public_key)
            root_cert = certs.build_root(
                root_signer, certs.subject_name(spec.root.subject), spec.root.validity_days, now
            )
            # 3. issuing key on the online token, its certificate signed by the root key
            iss_key = keygen.generate(handle, spec.issuing.key_label, spec.issuing.key_type)
            made.append(iss_key.label)
            iss_cert = certs.build_issuing(
                root_cert,
                root_signer,
                iss_key.public_key,
                certs.subject_name(spec.issuing.subject),
                spec.issuing.validity_days,
                now,
                path_len=spec.issuing.path_len or 0,
                **_issuing_urls(cfg, spec.root.name),
            )
            # 4. the issuing CA's OCSP responder key (the signer certifies it, short-lived)
            ocsp_key = keygen.generate(handle, responder_label, spec.issuing.key_type)
            made.append(ocsp_key.label)
            # 5. cross-check against what the tokens hold
            _check_against_token(root_handle, root_cert, root_key.label)
            _check_against_token(handle, iss_cert, iss_key.label)
            # 6. store on the tokens
            certs.store_on_token(root_handle.session, root_cert, root_key.label, root_key.key_id)
            certs.store_on_token(handle.session, iss_cert, iss_key.label, iss_key.key_id)
            # 7. the first root CRL (no issuing CA revoked), signed while the root token is open
            crl_der = rootcrl.first_crl(cfg, root_signer, root_cert, spec.root.name, now)
        except Exception:
            _cleanup(root_handle, made_root, out)
            _cleanup(handle, made, out)
            raise
    # 8. export and record; files are created exclusively, the manifest replaced atomically
    _write_pem(paths[spec.root.name], root_cert)
    _write_pem(paths[spec.issuing.name], iss_cert)
    root_entry = IssuerEntry(
        spec.root.name, "root", root_key.label, paths[spec.root.name], None, False
    )
    rootcrl.store(root_entry, rootcrl.FIRST, crl_der, out)
    new = [
        root_entry,
        IssuerEntry(
            spec.issuing.name,
            "issuing",
            iss_key.label,
            paths[spec.issuing.name],
            spec.root.name,
            True,
            ocsp_key.label,
        ),
    ]
    _record(cfg, entries, new)
    _report(out, "root", spec.root, root_key, root_cert, paths[spec.root.name])
    _report(out, "issuing", spec.issuing, iss_key, iss_cert, paths[spec.issuing.name])
    _report_responder_key(out, ocsp_key)
    out(f"manifest updated: {spec.issuing.name} is the active issuing CA")
    return new


def dev_spec(cfg: RawConfig) -> CeremonySpec:
    """The development ceremony's parameters, from the ``[ca]`` section."""
    sec = parse_section(cfg, "ca", CaSection)
    key_type = sec.key_type
    base = {k: v for k, v in {"O": sec.organization, "C": sec.country}.items() if v}
    return CeremonySpec(
        root=CaSpec(
            "root-1",
            "root-1",
            key_type,
            {"CN": "Dev Root CA", **base},
            sec.root_validity_days,
        ),
        issuing=CaSpec(
            "issuing-1",
            "issuing-1",
            key_type,
            {"CN": "Dev Issuing CA 1", **base},
            sec.issuing_validity_days,
            0,
        ),
    )


def dev_ceremony(cfg: RawConfig, out: Out = print, now: dt.datetime | None = None) -> bool:
    """What ``make run`` calls: once only, through a written (reviewable) ceremony file.

    Returns False when the manifest already lists issuers. An existing ``ceremony-dev.toml`` is
    used as it is: whoever edited it reviewed it.
    """
    folder = ca_dir(cfg).resolve()
    ensure_role_key(role_keys.AUDIT, cfg, out)  # the audit checkpoint key, once
    ensure_role_key(role_keys.CMP, cfg, out)  # the CMP protection key, once
    if load_manifest(folder / "issuers.toml"):
        out("dev ceremony already done (issuers.toml lists issuers)")
        return False
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / DEV_CEREMONY_FILE
    if not spec_path.exists():
        write_spec(spec_path, dev_spec(cfg))
        out(f"wrote ceremony parameters to {spec_path}")
    run_ceremony(cfg, load_spec(spec_path), out, now)
    return True


# -- rotation -----------------------------------------------------------------------------------
def _next_issuing_name(entries: list[IssuerEntry]) -> str:
    numbers = [
        int(m.group(1))
        for e in entries
        if e.role == "issuing" and (m := re.fullmatch(r"issuing-(\d+)", e.name))
    ]
    n = max(numbers, default=sum(e.role == "issuing" for e in entries))
    return f"issuing-{n + 1}"


def _rotated_subject(previous: x509.Name, name: str) -> dict[str, str]:
    """Same subject as the current issuing CA, with a CN that tells the generations apart."""
    fields = certs.subject_fields(previous)
    cn = fields.get("CN", "Issuing CA")
    suffix = name.rsplit("-", 1)[-1]
    if suffix.isdigit() and re.search(r"\d+$", cn):
        fields["CN"] = re.sub(r"\d+$", suffix, cn)
    else:
        base = re.sub(r" \(.*\)$", "", cn)
        fields["CN"] = f"{base} ({name})"
    return fields


def rotate(
    cfg: RawConfig,
    key_type: str | None = None,
    name: str | None = None,
    out: Out = print,
    now: dt.datetime | None = None,
) -> IssuerEntry:
    """A new issuing key and certificate under the same root; the old issuer stays (inactive)."""
    now = _now(now)
    folder = ca_dir(cfg).resolve()
    entries = load_manifest(folder / "issuers.toml")
    active = next((e for e in entries if e.active), None)
    if active is None:
        raise KeysError("no active issuing CA in the manifest: run the ceremony first", 2)
    root = next((e for e in entries if e.name == active.parent and e.role == "root"), None)
    if root is None:
        raise KeysError(f"the parent of {active.name!r} is not a root in the manifest")
    name = name or _next_issuing_name(entries)
    ca_sec = parse_section(cfg, "ca", CaSection)
    key_type = key_type or ca_sec.key_type
    root_cert = root.load_certificate()
    ca = CaSpec(
        name=name,
        key_label=name,
        key_type=key_type,
        subject=_rotated_subject(active.load_certificate().subject, name),
        validity_days=ca_sec.issuing_validity_days,
        path_len=0,
    )
    if not NAME_RE.match(name):
        raise KeysError(f"name {name!r} must match [a-z0-9-]{{1,63}}", 2)
    keygen.key_spec(key_type)
    root_tcfg = keygen.load_root_token_config(cfg)
    tcfg = keygen.load_token_config(cfg)
    responder_label = ocsp_key_label(ca.key_label)
    with (
        keygen.open_token(root_tcfg, rw=False) as root_handle,
        keygen.open_token(tcfg, rw=True) as handle,
    ):
        paths = _preflight(cfg, entries, [(ca, handle)], [(responder_label, handle)])
        root_signer = root_handle.signing_key(root.key_label)
        if not certs.matches_public_key(root_cert, root_signer.public_key()):
            raise KeysError(f"{root.certificate_path} does not match key {root.key_label!r}")
        made: list[str] = []
        try:
            key = keygen.generate(handle, ca.key_label, ca.key_type)
            made.append(key.label)
            cert = certs.build_issuing(
                root_cert,
                root_signer,
                key.public_key,
                certs.subject_name(ca.subject),
                ca.validity_days,
                now,
                **_issuing_urls(cfg, root.name),
            )
            ocsp_key = keygen.generate(handle, responder_label, ca.key_type)
            made.append(ocsp_key.label)
            _check_against_token(handle, cert, key.label)
            certs.store_on_token(handle.session, cert, key.label, key.key_id)
        except Exception:
            _cleanup(handle, made, out)
            raise
    _write_pem(paths[name], cert)
    entry = IssuerEntry(name, "issuing", key.label, paths[name], root.name, True, ocsp_key.label)
    _record(cfg, entries, [entry])
    _report(out, "issuing", ca, key, cert, paths[name])
    _report_responder_key(out, ocsp_key)
    out(f"manifest updated: {name} is the active issuing CA; {active.name} kept, inactive")
    return entry
