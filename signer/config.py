"""The signer's configuration, parsed strictly into validated runtime objects.

Everything that can be checked without the token is checked here, at start: unknown keys,
profiles that name no usage, validities out of range, a manifest without an active issuer, issuer
certificates that are not CAs. What needs the token (issuer certificate <-> token key) is checked
by each worker when it opens the token, before it takes work.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography import x509
from msgspec import Meta

from config.identities import resolve_gid, resolve_uid
from config.loader import ConfigError, RawConfig
from config.logs import LEVELS
from config.manifest import IssuerEntry, load_manifest, manifest_path
from config.sections import GatewaySection, PolicySection, Section, parse_section
from config.token import token_config
from signer.allocator import ALLOCATORS
from signer.issuance.bounds import (
    DEFAULT_CRL_MAX_VALIDITY_HOURS,
    DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    DEFAULT_OCSP_MAX_VALIDITY_HOURS,
    HOUR,
    Bounds,
)
from signer.issuance.profile import Profile, parse_profiles
from signer.role_keys import AUDIT, CMP
from signer.tls import ClientPins, server_context


def _between(lo: int, hi: int) -> Any:
    return Annotated[int, Meta(ge=lo, le=hi)]


class SignerSection(Section):
    """``[signer]`` as the file has it: the schema and the defaults of every key."""

    socket: str = ""  # the Unix socket (relative to the config folder)
    socket_mode: str | int = "0660"  # octal, as text ("0660") or a number (0o660)
    socket_group: str | int = ""  # name or number; empty: the signer's own group
    allowed_uids: tuple[str | int, ...] = ()  # users by name or number
    allowed_gids: tuple[str | int, ...] = ()
    tcp: str = ""  # "host:port", mutual TLS only
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # a TOML list; from the environment a comma-separated text, checked in _allowed_clients
    tls_allowed_clients: tuple[str, ...] | str = ()
    workers: _between(1, 64) = 2
    batch_max: _between(1, 4096) = 64
    bulk_batch_max: _between(1, 4096) = 16
    max_queue: _between(1, 1_000_000) = 8192
    metrics_port: _between(0, 65535) = 9101
    metrics_host: str = "127.0.0.1"
    log_level: Literal[LEVELS] = "info"  # type: ignore[valid-type]
    pipeline_depth: _between(1, 8) = 2
    stall_seconds: _between(2, 3600) = 30
    heartbeat_timeout: _between(1, 60) = 2
    pin_cpus: bool = False
    worker_allocator: Literal[ALLOCATORS] = "tcmalloc"  # type: ignore[valid-type]
    audit_checkpoint_file: str = "audit/checkpoints.jsonl"
    state_dir: str = "signer-state"  # the current OCSP responder certificates
    # at least 4 days: renewed with a third left, a responder certificate then outlives
    # every answer it signs (pre-signed answers are valid for one day)
    ocsp_responder_validity_days: _between(4, 366) = 7
    ocsp_max_validity_hours: _between(1, 8784) = DEFAULT_OCSP_MAX_VALIDITY_HOURS
    crl_max_validity_hours: _between(1, 8784) = DEFAULT_CRL_MAX_VALIDITY_HOURS
    max_clock_skew_seconds: _between(0, 86400) = DEFAULT_MAX_CLOCK_SKEW_SECONDS


_DEFAULTS = SignerSection()


@dataclass(frozen=True)
class IssuerSpec:
    """An issuer as the config knows it: manifest entry plus its parsed certificate."""

    name: str
    role: str
    key_label: str
    active: bool
    certificate: x509.Certificate
    ocsp_key_label: str | None = None  # the delegated OCSP responder's key on the token

    @property
    def online(self) -> bool:
        """Whether the signer holds this CA's key: issuing CAs yes, roots never (their key is
        on the offline root token, which only ca-keys ceremonies open)."""
        return self.role != "root"

    @classmethod
    def from_entry(cls, entry: IssuerEntry) -> IssuerSpec:
        cert = entry.load_certificate()
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound as exc:
            raise ConfigError(f"issuer {entry.name}: certificate lacks {exc.oid}") from exc
        if not bc.ca:
            raise ConfigError(f"issuer {entry.name}: certificate is not a CA certificate")
        if not (ku.key_cert_sign and ku.crl_sign):
            raise ConfigError(f"issuer {entry.name}: certificate lacks keyCertSign/cRLSign")
        return cls(
            entry.name, entry.role, entry.key_label, entry.active, cert, entry.ocsp_key_label
        )


@dataclass(frozen=True)
class SignerConfig:
    config_path: Path
    socket: Path | None
    socket_mode: int
    socket_gid: int | None
    allowed_uids: frozenset[int]
    allowed_gids: frozenset[int]
    tcp: str | None
    tls_cert: Path | None
    tls_key: Path | None
    tls_client_ca: Path | None
    tls_allowed_clients: ClientPins | None
    workers: int
    batch_max: int
    bulk_batch_max: int
    max_queue: int
    pipeline_depth: int
    stall_seconds: int
    heartbeat_timeout: int
    pin_cpus: bool
    worker_allocator: str
    metrics_host: str
    metrics_port: int
    log_level: str
    public_url: str
    profiles: dict[str, Profile]
    issuers: dict[str, IssuerSpec]
    # audit checkpoints (signer/checkpoints.py): the key ca-keys audit-key made, its recorded
    # public key (no file: checkpoints are refused), the signer's own append-only ledger
    audit_key_label: str = "audit-1"
    audit_public_key: Path | None = None
    audit_checkpoint_file: Path | None = None
    state_dir: Path = Path("signer-state")  # the current OCSP responder certificates
    ocsp_responder_validity_days: int = 7
    # what the signer signs at most, whatever the gateway asks (signer/issuance/bounds.py)
    bounds: Bounds = field(default_factory=Bounds)
    # the CMP protection key (signer/cmp_protection.py): ca-keys cmp-key, its recorded public
    # key (no file: signed CMP answers are refused)
    cmp_key_label: str = "cmp-1"
    cmp_public_key: Path | None = None

    @property
    def online_issuers(self) -> list[IssuerSpec]:
        """The issuers whose keys the workers load: never a root."""
        return [i for i in self.issuers.values() if i.online]

    @property
    def active_issuer(self) -> IssuerSpec:
        return next(i for i in self.issuers.values() if i.active)


def public_url(cfg: RawConfig) -> str:
    """Where subscribers reach the gateway (``[gateway] public_url``): the signer writes it
    into certificates (CRL distribution point, OCSP responder)."""
    return parse_section(cfg, "gateway", GatewaySection).url


def _allowed_clients(sec: SignerSection) -> ClientPins:
    """``tls_allowed_clients``: a TOML list in the file; from the environment (a key the file
    leaves out) a comma-separated list of fingerprints only, since subjects contain commas."""
    where = "[signer] tls_allowed_clients"
    value = sec.tls_allowed_clients
    if isinstance(value, str):
        value = tuple(part for part in value.split(",") if part.strip())
        if not all(part.strip().lower().startswith("sha256:") for part in value):
            raise ConfigError(f"{where}: from the environment only sha256: fingerprints")
    return ClientPins.parse(list(value), where)


def _ids(
    names: tuple[str | int, ...], key: str, resolve: Callable[[str | int], int]
) -> frozenset[int]:
    """Users or groups by name or number."""
    try:
        return frozenset(resolve(v) for v in names)
    except KeyError as exc:
        raise ConfigError(f"[signer] {key}: {exc.args[0]}") from exc


def _socket_mode(value: str | int) -> int:
    """An octal mode: text is read in base 8 ("0660"), a number is taken as it is (0o660)."""
    mode: int | None = value if isinstance(value, int) else None
    if isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            mode = None
    if mode is None or not 0 <= mode <= 0o777:
        raise ConfigError('[signer] socket_mode must be an octal mode such as "0660"')
    return mode


def _socket_gid(value: str | int) -> int | None:
    if value == "":
        return None
    try:
        return resolve_gid(value)
    except KeyError as exc:
        raise ConfigError(f"[signer] socket_group: {exc.args[0]}") from exc


def load_signer_config(cfg: RawConfig) -> SignerConfig:
    """The signer's runtime object: ``[signer]`` parsed, then everything checked that can be
    checked without the token (TLS files, the manifest, the issuer certificates)."""
    sec = parse_section(cfg, "signer", SignerSection)
    token_config(cfg)  # fail early on a missing PIN file, not inside every worker
    if not sec.socket and not sec.tcp:
        raise ConfigError("[signer]: set socket, tcp or both")

    def opt_path(value: str) -> Path | None:
        return cfg.resolve(value) if value else None

    tls = (opt_path(sec.tls_cert), opt_path(sec.tls_key), opt_path(sec.tls_client_ca))
    pins = None
    if sec.tcp:
        if not all(tls):
            raise ConfigError("[signer] tcp needs tls_cert, tls_key and tls_client_ca (mutual TLS)")
        # a certificate chaining to the client CA is not enough: only pinned clients are served
        pins = _allowed_clients(sec)
        try:
            server_context(*tls)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[signer] tls_cert/tls_key/tls_client_ca unusable: {exc}") from exc
    entries = load_manifest(manifest_path(cfg))
    if not entries:
        raise ConfigError(f"{manifest_path(cfg)}: no issuers; run the key ceremony first")
    issuers = {e.name: IssuerSpec.from_entry(e) for e in entries}
    profiles = parse_profiles(cfg)
    return SignerConfig(
        config_path=cfg.path,
        socket=opt_path(sec.socket),
        socket_mode=_socket_mode(sec.socket_mode),
        socket_gid=_socket_gid(sec.socket_group),
        allowed_uids=_ids(sec.allowed_uids, "allowed_uids", resolve_uid),
        allowed_gids=_ids(sec.allowed_gids, "allowed_gids", resolve_gid),
        tcp=sec.tcp or None,
        tls_cert=tls[0],
        tls_key=tls[1],
        tls_client_ca=tls[2],
        tls_allowed_clients=pins,
        workers=sec.workers,
        batch_max=sec.batch_max,
        bulk_batch_max=sec.bulk_batch_max,
        max_queue=sec.max_queue,
        pipeline_depth=sec.pipeline_depth,
        stall_seconds=sec.stall_seconds,
        heartbeat_timeout=sec.heartbeat_timeout,
        pin_cpus=sec.pin_cpus,
        worker_allocator=sec.worker_allocator,
        metrics_host=sec.metrics_host,
        metrics_port=sec.metrics_port,
        log_level=sec.log_level,
        public_url=public_url(cfg),
        profiles=profiles,
        issuers=issuers,
        audit_key_label=AUDIT.label(cfg),
        audit_public_key=AUDIT.public_key_path(cfg),
        cmp_key_label=CMP.label(cfg),
        cmp_public_key=CMP.public_key_path(cfg),
        audit_checkpoint_file=cfg.resolve(
            sec.audit_checkpoint_file or _DEFAULTS.audit_checkpoint_file
        ),
        state_dir=cfg.resolve(sec.state_dir or _DEFAULTS.state_dir),
        ocsp_responder_validity_days=sec.ocsp_responder_validity_days,
        bounds=_bounds(cfg, sec),
    )


def _bounds(cfg: RawConfig, sec: SignerSection) -> Bounds:
    """The OCSP/CRL limits, cross-checked with the gateway's own CRL validity in the same file
    (``[policy] crl_next_update_hours``): a gateway whose every CRL the signer would refuse
    stops the start here rather than at the first revocation."""
    crl_hours = sec.crl_max_validity_hours
    gateway_crl_hours = parse_section(cfg, "policy", PolicySection).crl_next_update_hours
    if gateway_crl_hours > crl_hours:
        raise ConfigError(
            f"[policy] crl_next_update_hours ({gateway_crl_hours}) is above [signer] "
            f"crl_max_validity_hours ({crl_hours}): the signer would refuse every CRL"
        )
    return Bounds(
        ocsp_max_validity=sec.ocsp_max_validity_hours * HOUR,
        crl_max_validity=crl_hours * HOUR,
        max_clock_skew=sec.max_clock_skew_seconds,
    )
