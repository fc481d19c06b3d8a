"""The gateway's part of the configuration file: [gateway], [database], [policy], [smtp],
[ratelimit].

Parsed strictly (unknown keys are errors) into one frozen object, so a typo in a security
setting stops the start instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.loader import ConfigError, RawConfig, as_int, check_keys, read_secret
from config.manifest import manifest_path
from signer.client import ClientTls

APP_PASSWORD_FILE = "secrets/db-app.password"  # noqa: S105 -- a path (db/roles.py writes it)

GATEWAY_KEYS = {
    "host",
    "port",
    "public_url",
    "captcha",
    "signers",
    "session_key_file",
    "session_key_env",
    "session_idle_timeout",
    "session_absolute_timeout",
    "captcha_ttl",
    "log_level",
    "crl_refresh_seconds",
    "notice_interval_seconds",
    "audit_checkpoint_seconds",
    "pending_sweep_seconds",
    "signer_tls_cert",
    "signer_tls_key_file",
    "signer_tls_key_env",
    "signer_tls_ca",
    "officer_second_factor",
    "password_workers",
    "password_queue",
    "housekeeping_seconds",
    "captcha_max_rows",
    "ocsp_fresh_per_second",
    "ocsp_fresh_burst",
    "cmp_max_skew_seconds",
    "cmp_replay_window_seconds",
    "cmp_secret_days",
}
OFFICER_SECOND_FACTOR = ("optional", "required")
DATABASE_KEYS = {
    "url",
    "pool_min",
    "pool_max",
    "migrate_on_start",
    "user",
    "password_file",
    "password_env",
    "owner",
    "owner_password_file",
    "owner_password_env",
    "acquire_timeout",
}
POLICY_KEYS = {
    "renewal_window_days",
    "certificate_validity_days",
    "password_min",
    "password_max",
    "login_max_failures",
    "officer_max_failures",
    "crl_next_update_hours",
    "unknown_login_retention_hours",
    "unknown_login_max_rows",
}
SMTP_KEYS = {"host", "port", "from"}
LIMIT_KEYS = (
    "login_per_address",
    "login_per_account",
    "officer_login_per_address",
    "officer_login_per_account",
    "password_per_address",
    "password_per_account",
    "captcha_per_address",
)
RATELIMIT_KEYS = {"window_seconds", "proxy_header", "trusted_proxies", *LIMIT_KEYS}
MAX_VALIDITY_DAYS = 1095  # the signer profiles' ceiling
MAX_BODY = 64 * 1024  # fixed by API.md


@dataclass(frozen=True)
class RateLimits:
    """``[ratelimit]``: token buckets in PostgreSQL, shared by every gateway. Each limit is
    the number of attempts one source address (IPv6: its /64) or one account may make per
    ``window_seconds``, refilled evenly; ``0`` switches that limit off. They come before the
    lock, never instead of it: an attempt over a limit is not evaluated at all."""

    window_seconds: int = 60
    login_per_address: int = 60  # subscriber logins
    login_per_account: int = 10
    officer_login_per_address: int = 30
    officer_login_per_account: int = 10
    password_per_address: int = 30  # password changes (guesses of the old password)
    password_per_account: int = 10
    captcha_per_address: int = 120  # GET /api/v1/captcha (renders an image, stores a row)
    # the client address from this header (e.g. "X-Forwarded-For"), only when the peer is one
    # of ``trusted_proxies`` (addresses or networks); empty: the peer address, always
    proxy_header: str = ""
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def off(cls) -> RateLimits:
        """Every limit switched off (tests of other things, benchmarks)."""
        return cls(**dict.fromkeys(LIMIT_KEYS, 0))

    def limit(self, name: str) -> int:
        return int(getattr(self, name))


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    captcha: bool = True
    signers: tuple[str, ...] = ()
    signer_tls: ClientTls | None = None  # client certificate for tls:// signers
    session_key: bytes | None = None
    session_idle_timeout: int = 15 * 60  # seconds
    session_absolute_timeout: int = 8 * 3600  # seconds
    captcha_ttl: int = 180  # seconds
    log_level: str = "info"
    database_url: str = ""  # empty: the embedded cluster under <config folder>/pg
    embedded_pg_dir: Path | None = None
    database_user: str = "ca_app"  # the application role (db/roles.py) on the embedded cluster
    database_password_file: Path | None = None  # the application role's password, read at
    database_password_env: str = ""  # start (so --check-config needs no secret)
    pool_min: int = 1
    pool_max: int = 10
    migrate_on_start: bool = False  # the owner migrates (ca-admin migrate), not the gateway
    acquire_timeout: int = 5  # seconds a request waits for a pooled connection, then 503
    renewal_window_days: int = 30
    certificate_validity_days: int = 365
    password_min: int = 6
    password_max: int = 16
    login_max_failures: int = 3
    officer_max_failures: int = 5
    max_body: int = MAX_BODY
    manifest_path: Path | None = None  # the issuer manifest ([ca] dir / issuers.toml)
    crl_refresh_seconds: int = 300
    notice_interval_seconds: int = 300
    audit_checkpoint_seconds: int = 300  # signed audit checkpoints; 0: off (and at shutdown)
    pending_sweep_seconds: int = 10  # how often pending rows past their deadline are resolved
    crl_next_update_hours: int = 24
    # fresh OCSP signatures (nonces, nothing stored, new unknown serials) per second and
    # saved up at most; 0: never sign on request (gateway/services/ocsp_budget.py)
    ocsp_fresh_per_second: int = 50
    ocsp_fresh_burst: int = 50
    smtp_host: str = ""  # empty: renewal notices are switched off
    smtp_port: int = 25
    smtp_from: str = "ca@localhost"
    # "optional": officers with an enrolled factor must use it; "required": every officer
    officer_second_factor: str = "optional"
    ratelimit: RateLimits = dataclasses.field(default_factory=RateLimits)
    password_workers: int = 0  # Argon2 threads; 0: one per core
    password_queue: int = 16  # verifications waiting beyond those; more: 503 busy
    housekeeping_seconds: int = 60  # purge of expired sessions, captchas, counters, buckets
    captcha_max_rows: int = 100_000  # stored captchas kept at most (newest first)
    unknown_login_retention_hours: int = 24  # failure counters of names that do not exist
    unknown_login_max_rows: int = 100_000  # ... kept at most, per table (subscriber, officer)
    cmp_max_skew_seconds: int = 300  # CMP messageTime must be this close to the clock
    cmp_replay_window_seconds: int = 900  # (transactionID, senderNonce) pairs remembered
    cmp_secret_days: int = 14  # lifetime of a one-time CMP enrolment secret

    @property
    def https(self) -> bool:
        """Browsers reach this gateway over HTTPS (``public_url``; TLS is terminated here or
        in front): answers carry HSTS and session cookies are ``__Host-``, Secure."""
        return self.public_url.startswith("https://")

    def __repr__(self) -> str:  # keep the session key out of logs
        return f"GatewayConfig(port={self.port}, public_url={self.public_url!r}, ...)"


def _int(sec: dict[str, Any], key: str, default: int, where: str, *, minimum: int = 0) -> int:
    raw = sec.get(key, default)
    value = as_int(raw)
    if value is None:
        raise ConfigError(f"[{where}] {key}: expected an integer, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"[{where}] {key}: must be at least {minimum}")
    return value


def _str(sec: dict[str, Any], key: str, default: str, where: str) -> str:
    value = sec.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"[{where}] {key}: expected a string, got {value!r}")
    return value


def _onoff(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"on", "true", "yes", "1"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"off", "false", "no", "0"}:
        return False
    raise ConfigError(f'{where}: expected "on" or "off", got {value!r}')


def _signer_tls(cfg: RawConfig, gw: dict[str, Any], signers: list[str]) -> ClientTls | None:
    """The client certificate for ``tls://`` signers. A ``tls://`` address without it is an
    error here: the gateway must never reach a signer over TCP without mutual TLS."""
    tls_signers = [s for s in signers if s.startswith("tls://")]
    for s in tls_signers:
        host, _, port = s[6:].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"[gateway] signers: {s!r} is not tls://HOST:PORT")
    cert = _str(gw, "signer_tls_cert", "", "gateway")
    ca = _str(gw, "signer_tls_ca", "", "gateway")
    has_key = bool(gw.get("signer_tls_key_file") or gw.get("signer_tls_key_env"))
    if not (cert or ca or has_key):
        if tls_signers:
            raise ConfigError(
                f"[gateway] signers: {tls_signers[0]} needs signer_tls_cert, signer_tls_key_file "
                "(or signer_tls_key_env) and signer_tls_ca (mutual TLS)"
            )
        return None
    if not (cert and ca and has_key):
        raise ConfigError(
            "[gateway]: signer_tls_cert, signer_tls_key_file (or _env) and signer_tls_ca go "
            "together"
        )
    key_pem = read_secret(cfg, gw, "signer_tls_key", "gateway")
    assert key_pem is not None
    tls = ClientTls(cert=cfg.resolve(cert), key_pem=key_pem, ca=cfg.resolve(ca))
    try:
        tls.context()  # unreadable or mismatched files stop the start, not the first issuance
    except ValueError as exc:
        raise ConfigError(f"[gateway] signer_tls_*: {exc}") from exc
    return tls


def _ratelimits(sec: dict[str, Any]) -> RateLimits:
    check_keys(sec, RATELIMIT_KEYS, "ratelimit")
    defaults = RateLimits()
    limits = {k: _int(sec, k, defaults.limit(k), "ratelimit") for k in LIMIT_KEYS}
    header = _str(sec, "proxy_header", "", "ratelimit").strip()
    raw = sec.get("trusted_proxies", [])
    if isinstance(raw, str):
        raw = [p.strip() for p in raw.split(",") if p.strip()]
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise ConfigError("[ratelimit] trusted_proxies: expected a list of addresses/networks")
    for p in raw:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError as exc:
            raise ConfigError(f"[ratelimit] trusted_proxies: {p!r} is no address") from exc
    if header and not raw:
        raise ConfigError(
            "[ratelimit] proxy_header needs trusted_proxies (the proxies whose "
            "header is believed); anyone could set it otherwise"
        )
    return RateLimits(
        window_seconds=_int(sec, "window_seconds", 60, "ratelimit", minimum=1),
        proxy_header=header,
        trusted_proxies=tuple(raw),
        **limits,
    )


def gateway_config(cfg: RawConfig, environ: dict[str, str] | None = None) -> GatewayConfig:
    environ = dict(os.environ) if environ is None else environ
    gw = cfg.section("gateway")
    db = cfg.section("database")
    pol = cfg.section("policy")
    check_keys(gw, GATEWAY_KEYS, "gateway")
    check_keys(db, DATABASE_KEYS, "database")
    check_keys(pol, POLICY_KEYS, "policy")
    smtp = cfg.section("smtp")
    check_keys(smtp, SMTP_KEYS, "smtp")
    validity = _int(pol, "certificate_validity_days", 365, "policy", minimum=1)
    if validity > MAX_VALIDITY_DAYS:
        raise ConfigError(f"[policy] certificate_validity_days: at most {MAX_VALIDITY_DAYS}")
    smtp_port = _int(smtp, "port", 25, "smtp", minimum=1)
    if smtp_port > 65535:
        raise ConfigError("[smtp] port: must be at most 65535")

    port = _int(gw, "port", 8080, "gateway")
    if port > 65535:
        raise ConfigError("[gateway] port: must be at most 65535")
    public_url = _str(gw, "public_url", "", "gateway").rstrip("/") or f"http://127.0.0.1:{port}"
    signers = gw.get("signers", [])
    if isinstance(signers, str):
        signers = [s.strip() for s in signers.split(",") if s.strip()]
    if not isinstance(signers, list) or not all(isinstance(s, str) for s in signers):
        raise ConfigError("[gateway] signers: expected a list of addresses")
    # relative unix socket paths are relative to the configuration folder
    resolved = []
    for s in signers:
        if s.startswith("unix:") and not s[5:].startswith("/"):
            s = f"unix:{cfg.resolve(s[5:])}"
        resolved.append(s)
    signer_tls = _signer_tls(cfg, gw, resolved)
    key = None
    if gw.get("session_key_file") or gw.get("session_key_env"):
        try:
            secret = read_secret(cfg, gw, "session_key", "gateway", required=False)
        except ConfigError:
            secret = None  # the key is optional (it only peppers captcha hashes)
        key = secret.encode() if secret else None

    pmin = _int(pol, "password_min", 6, "policy", minimum=1)
    pmax = _int(pol, "password_max", 16, "policy", minimum=1)
    if pmax < pmin:
        raise ConfigError("[policy] password_max must not be below password_min")
    log_level = _str(gw, "log_level", "info", "gateway").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError("[gateway] log_level: debug, info, warning or error")

    second_factor = _str(gw, "officer_second_factor", "optional", "gateway").strip().lower()
    if second_factor not in OFFICER_SECOND_FACTOR:
        raise ConfigError('[gateway] officer_second_factor: "optional" or "required"')

    fresh = _int(gw, "ocsp_fresh_per_second", 50, "gateway")
    url = environ.get("DATABASE_URL") or _str(db, "url", "", "database")
    password_file = _str(db, "password_file", "", "database")
    if not password_file and not url and not db.get("password_env"):
        password_file = APP_PASSWORD_FILE  # the embedded cluster's (a var/ca.toml from before)
    cmp_skew = _int(gw, "cmp_max_skew_seconds", 300, "gateway", minimum=1)
    cmp_window = _int(gw, "cmp_replay_window_seconds", 900, "gateway", minimum=1)
    if cmp_window < cmp_skew:
        raise ConfigError(
            "[gateway] cmp_replay_window_seconds must not be below "
            "cmp_max_skew_seconds (a replay must be refused until its "
            "messageTime is too old)"
        )
    return GatewayConfig(
        host=_str(gw, "host", "127.0.0.1", "gateway"),
        port=port,
        public_url=public_url,
        captcha=_onoff(gw.get("captcha", "on"), "[gateway] captcha"),
        signers=tuple(resolved),
        signer_tls=signer_tls,
        session_key=key,
        session_idle_timeout=_int(gw, "session_idle_timeout", 900, "gateway", minimum=1),
        session_absolute_timeout=_int(gw, "session_absolute_timeout", 28800, "gateway", minimum=1),
        captcha_ttl=_int(gw, "captcha_ttl", 180, "gateway", minimum=1),
        log_level=log_level,
        database_url=url,
        embedded_pg_dir=None if url else cfg.base_dir / "pg",
        database_user=_str(db, "user", "ca_app", "database"),
        database_password_file=cfg.resolve(password_file) if password_file else None,
        database_password_env=_str(db, "password_env", "", "database"),
        pool_min=_int(db, "pool_min", 1, "database", minimum=0),
        pool_max=_int(db, "pool_max", 10, "database", minimum=1),
        migrate_on_start=_onoff(db.get("migrate_on_start", False), "[database] migrate_on_start"),
        acquire_timeout=_int(db, "acquire_timeout", 5, "database", minimum=1),
        renewal_window_days=_int(pol, "renewal_window_days", 30, "policy", minimum=1),
        certificate_validity_days=validity,
        password_min=pmin,
        password_max=pmax,
        login_max_failures=_int(pol, "login_max_failures", 3, "policy", minimum=1),
        officer_max_failures=_int(pol, "officer_max_failures", 5, "policy", minimum=1),
        manifest_path=manifest_path(cfg),
        crl_refresh_seconds=_int(gw, "crl_refresh_seconds", 300, "gateway", minimum=1),
        notice_interval_seconds=_int(gw, "notice_interval_seconds", 300, "gateway", minimum=1),
        audit_checkpoint_seconds=_int(gw, "audit_checkpoint_seconds", 300, "gateway"),
        pending_sweep_seconds=_int(gw, "pending_sweep_seconds", 10, "gateway", minimum=1),
        crl_next_update_hours=_int(pol, "crl_next_update_hours", 24, "policy", minimum=1),
        ocsp_fresh_per_second=fresh,
        ocsp_fresh_burst=_int(gw, "ocsp_fresh_burst", fresh, "gateway"),
        smtp_host=_str(smtp, "host", "", "smtp").strip(),
        smtp_port=smtp_port,
        smtp_from=_str(smtp, "from", "ca@localhost", "smtp").strip() or "ca@localhost",
        officer_second_factor=second_factor,
        ratelimit=_ratelimits(cfg.section("ratelimit")),
        password_workers=_int(gw, "password_workers", 0, "gateway"),
        password_queue=_int(gw, "password_queue", 16, "gateway"),
        housekeeping_seconds=_int(gw, "housekeeping_seconds", 60, "gateway", minimum=1),
        captcha_max_rows=_int(gw, "captcha_max_rows", 100_000, "gateway", minimum=1),
        unknown_login_retention_hours=_int(
            pol, "unknown_login_retention_hours", 24, "policy", minimum=1
        ),
        unknown_login_max_rows=_int(pol, "unknown_login_max_rows", 100_000, "policy", minimum=1),
        cmp_max_skew_seconds=cmp_skew,
        cmp_replay_window_seconds=cmp_window,
        cmp_secret_days=_int(gw, "cmp_secret_days", 14, "gateway", minimum=1),
    )


def database_password(cfg: GatewayConfig) -> str | None:
    """The application role's password: ``password_env`` if set there, else the file's
    contents; None when neither is configured (a DSN that needs no password)."""
    if cfg.database_password_env and os.environ.get(cfg.database_password_env):
        return os.environ[cfg.database_password_env]
    if cfg.database_password_file is None:
        return None
    try:
        return cfg.database_password_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if cfg.database_url:
            return None  # the DSN may carry its own credentials
        raise ConfigError(
            f"[database] password_file: {cfg.database_password_file} is missing "
            "(`make run` writes it with the roles)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"[database] password_file: cannot read {cfg.database_password_file}: {exc.strerror}"
        ) from exc


def database_url(cfg: GatewayConfig) -> str:
    """The DSN to use: the configured one, else the embedded cluster's (which must be running)."""
    if cfg.database_url:
        return cfg.database_url
    from db.embedded import Cluster

    assert cfg.embedded_pg_dir is not None
    return Cluster(cfg.embedded_pg_dir).dsn(user=cfg.database_user)
