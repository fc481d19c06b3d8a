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

from cryptography import x509

from config.identities import resolve_gid, resolve_uid
from config.loader import ConfigError, RawConfig, as_int, check_keys
from config.manifest import IssuerEntry, load_manifest, manifest_path
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

SIGNER_KEYS = {
    "socket",
    "socket_mode",
    "socket_group",
    "allowed_uids",
    "allowed_gids",
    "tcp",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tls_allowed_clients",
    "workers",
    "batch_max",
    "bulk_batch_max",
    "max_queue",
    "metrics_port",
    "metrics_host",
    "log_level",
    "pipeline_depth",
    "stall_seconds",
    "heartbeat_timeout",
    "pin_cpus",
    "worker_allocator",
    "audit_checkpoint_file",
    "state_dir",
    "ocsp_responder_validity_days",
    "ocsp_max_validity_hours",
    "crl_max_validity_hours",
    "max_clock_skew_seconds",
}


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
    gw = cfg.section("gateway")
    url = str(gw.get("public_url") or "")
    if not url:
        url = f"http://127.0.0.1:{int(gw.get('port', 8080))}"
    return url.rstrip("/")


def _int(sec: dict[str, object], key: str, default: int, lo: int, hi: int) -> int:
    value = as_int(sec.get(key, default))
    if value is None or not lo <= value <= hi:
        raise ConfigError(f"[signer] {key} must be an integer in {lo}..{hi}")
    return value


def _bool(sec: dict[str, object], key: str, default: bool) -> bool:
    value = sec.get(key, default)
    if isinstance(value, str):  # from an environment override of a key the file leaves out
        value = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}.get(
            value.strip().lower(), value
        )
    if not isinstance(value, bool):
        raise ConfigError(f"[signer] {key} must be true or false")
    return value


def _choice(sec: dict[str, object], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = sec.get(key, default)
    if value not in choices:
        raise ConfigError(f"[signer] {key} must be one of {', '.join(choices)}")
    return str(value)


def _allowed_clients(sec: dict[str, object]) -> ClientPins:
    """``tls_allowed_clients``: a TOML list in the file; from the environment (a key the file
    leaves out) a comma-separated list of fingerprints only, since subjects contain commas."""
    where = "[signer] tls_allowed_clients"
    value = sec.get("tls_allowed_clients") or []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
        if not all(part.strip().lower().startswith("sha256:") for part in value):
            raise ConfigError(f"{where}: from the environment only sha256: fingerprints")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return ClientPins.parse(value, where)


def _ids(sec: dict[str, object], key: str, resolve: Callable[[str | int], int]) -> frozenset[int]:
    """A list of users or groups by name or number; an environment override is comma-separated."""
    value = sec.get(key, [])
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"[signer] {key} must be a list of names or numbers")
    try:
        return frozenset(resolve(v) for v in value)
    except KeyError as exc:
        raise ConfigError(f"[signer] {key}: {exc.args[0]}") from exc


def _socket_mode(sec: dict[str, object]) -> int:
    value = sec.get("socket_mode", 0o660)
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            value = None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise ConfigError('[signer] socket_mode must be an octal mode such as "0660"')
    return value


def _socket_gid(sec: dict[str, object]) -> int | None:
    value = sec.get("socket_group") or None
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ConfigError("[signer] socket_group must be a group name or number")
    try:
        return resolve_gid(value)
    except KeyError as exc:
        raise ConfigError(f"[signer] socket_group: {exc.args[0]}") from exc


def load_signer_config(cfg: RawConfig) -> SignerConfig:
    sec = cfg.section("signer")
    check_keys(sec, SIGNER_KEYS, "signer")
    token_config(cfg)  # fail early on a missing PIN file, not inside every worker
    socket = sec.get("socket") or None
    tcp = sec.get("tcp") or None
    if not socket and not tcp:
        raise ConfigError("[signer]: set socket, tcp or both")

    def opt_path(key: str) -> Path | None:
        value = sec.get(key)
        return cfg.resolve(str(value)) if value else None

    tls = (opt_path("tls_cert"), opt_path("tls_key"), opt_path("tls_client_ca"))
    pins = None
    if tcp:
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
    bounds = _bounds(cfg, sec)
    return SignerConfig(
        config_path=cfg.path,
        socket=cfg.resolve(str(socket)) if socket else None,
        socket_mode=_socket_mode(sec),
        socket_gid=_socket_gid(sec),
        allowed_uids=_ids(sec, "allowed_uids", resolve_uid),
        allowed_gids=_ids(sec, "allowed_gids", resolve_gid),
        tcp=str(tcp) if tcp else None,
        tls_cert=tls[0],
        tls_key=tls[1],
        tls_client_ca=tls[2],
        tls_allowed_clients=pins,
        workers=_int(sec, "workers", 2, 1, 64),
        batch_max=_int(sec, "batch_max", 64, 1, 4096),
        bulk_batch_max=_int(sec, "bulk_batch_max", 16, 1, 4096),
        max_queue=_int(sec, "max_queue", 8192, 1, 1_000_000),
        pipeline_depth=_int(sec, "pipeline_depth", 2, 1, 8),
        stall_seconds=_int(sec, "stall_seconds", 30, 2, 3600),
        heartbeat_timeout=_int(sec, "heartbeat_timeout", 2, 1, 60),
        pin_cpus=_bool(sec, "pin_cpus", False),
        worker_allocator=_choice(sec, "worker_allocator", "tcmalloc", ALLOCATORS),
        metrics_host=str(sec.get("metrics_host", "127.0.0.1")),
        metrics_port=_int(sec, "metrics_port", 9101, 0, 65535),
        log_level=str(sec.get("log_level", "info")),
        public_url=public_url(cfg),
        profiles=profiles,
        issuers=issuers,
        audit_key_label=AUDIT.label(cfg),
        audit_public_key=AUDIT.public_key_path(cfg),
        cmp_key_label=CMP.label(cfg),
        cmp_public_key=CMP.public_key_path(cfg),
        audit_checkpoint_file=cfg.resolve(
            str(sec.get("audit_checkpoint_file") or "audit/checkpoints.jsonl")
        ),
        state_dir=cfg.resolve(str(sec.get("state_dir") or "signer-state")),
        # at least 4 days: renewed with a third left, a responder certificate then outlives
        # every answer it signs (pre-signed answers are valid for one day)
        ocsp_responder_validity_days=_int(sec, "ocsp_responder_validity_days", 7, 4, 366),
        bounds=bounds,
    )


def _bounds(cfg: RawConfig, sec: dict[str, object]) -> Bounds:
    """The OCSP/CRL limits, cross-checked with the gateway's own CRL validity in the same file
    (``[policy] crl_next_update_hours``): a gateway whose every CRL the signer would refuse
    stops the start here rather than at the first revocation."""
    ocsp_hours = _int(sec, "ocsp_max_validity_hours", DEFAULT_OCSP_MAX_VALIDITY_HOURS, 1, 8784)
    crl_hours = _int(sec, "crl_max_validity_hours", DEFAULT_CRL_MAX_VALIDITY_HOURS, 1, 8784)
    skew = _int(sec, "max_clock_skew_seconds", DEFAULT_MAX_CLOCK_SKEW_SECONDS, 0, 86400)
    gateway_crl_hours = as_int(cfg.section("policy").get("crl_next_update_hours", 24))
    if gateway_crl_hours is not None and gateway_crl_hours > crl_hours:
        raise ConfigError(
            f"[policy] crl_next_update_hours ({gateway_crl_hours}) is above [signer] "
            f"crl_max_validity_hours ({crl_hours}): the signer would refuse every CRL"
        )
    return Bounds(
        ocsp_max_validity=ocsp_hours * HOUR, crl_max_validity=crl_hours * HOUR, max_clock_skew=skew
    )
