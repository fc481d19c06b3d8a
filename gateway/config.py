"""The gateway's part of the configuration file: [gateway], [database], [policy], [smtp],
[ratelimit], as one frozen object.

The sections' schemas and defaults are ``config/sections.py`` (unknown keys and values out of
bounds are errors there); this module adds what needs more than one section or a file: signer
addresses resolved against the config folder, the signer's TLS client files, the embedded
database's folder, the issuer manifest's path, and the secrets read at start.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from config.loader import ConfigError, RawConfig, read_secret, read_secret_file
from config.manifest import manifest_path
from config.sections import (
    LIMIT_KEYS,
    DatabaseSection,
    GatewaySection,
    PolicySection,
    RateLimits,
    SmtpSection,
    embedded_database_dir,
    parse_section,
)
from config.sections import database_url as configured_database_url
from db.roles import APP_PASSWORD_FILE
from signer.client import ClientTls

__all__ = ["LIMIT_KEYS", "GatewayConfig", "RateLimits", "gateway_config"]

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_BODY = 64 * 1024  # fixed by API.md
_GW, _DB, _POLICY, _SMTP = GatewaySection(), DatabaseSection(), PolicySection(), SmtpSection()


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway runs with. Defaults are the sections' (``config/sections.py``), so a
    test that builds one by hand gets what an empty file gives."""

    host: str = _GW.host
    port: int = _GW.port
    public_url: str = _GW.url
    captcha: bool = _GW.captcha
    signers: tuple[str, ...] = _GW.signers
    signer_tls: ClientTls | None = None  # client certificate for tls:// signers
    # the captcha pepper: its file or variable, read at start (with_session_key), not by
    # --check-config, like the database password
    session_key_file: Path | None = None
    session_key_env: str = _GW.session_key_env
    session_key: bytes | None = None
    session_idle_timeout: int = _GW.session_idle_timeout  # seconds
    session_absolute_timeout: int = _GW.session_absolute_timeout  # seconds
    captcha_ttl: int = _GW.captcha_ttl  # seconds
    log_level: str = _GW.log_level
    database_url: str = _DB.url  # empty: the embedded cluster under <config folder>/pg
    embedded_pg_dir: Path | None = None
    database_user: str = _DB.user
    database_password_file: Path | None = None  # the application role's password, read at
    database_password_env: str = _DB.password_env  # start (so --check-config needs no secret)
    pool_min: int = _DB.pool_min
    pool_max: int = _DB.pool_max
    migrate_on_start: bool = _DB.migrate_on_start
    acquire_timeout: int = _DB.acquire_timeout  # seconds a request waits for a connection
    renewal_window_days: int = _POLICY.renewal_window_days
    certificate_validity_days: int = _POLICY.certificate_validity_days
    password_min: int = _POLICY.password_min
    password_max: int = _POLICY.password_max
    login_max_failures: int = _POLICY.login_max_failures
    officer_max_failures: int = _POLICY.officer_max_failures
    max_body: int = MAX_BODY
    manifest_path: Path | None = None  # the issuer manifest ([ca] dir / issuers.toml)
    crl_refresh_seconds: int = _GW.crl_refresh_seconds
    notice_interval_seconds: int = _GW.notice_interval_seconds
    audit_checkpoint_seconds: int = _GW.audit_checkpoint_seconds  # 0: off
    pending_sweep_seconds: int = _GW.pending_sweep_seconds
    crl_next_update_hours: int = _POLICY.crl_next_update_hours
    # fresh OCSP signatures (nonces, nothing stored, new unknown serials) per second and
    # saved up at most; 0: never sign on request (gateway/services/ocsp_budget.py)
    ocsp_fresh_per_second: int = _GW.ocsp_fresh_per_second
    ocsp_fresh_burst: int = _GW.ocsp_fresh_per_second
    smtp_host: str = _SMTP.host  # empty: renewal notices are switched off
    smtp_port: int = _SMTP.port
    smtp_from: str = _SMTP.sender
    officer_second_factor: str = _GW.officer_second_factor
    ratelimit: RateLimits = dataclasses.field(default_factory=RateLimits)
    password_workers: int = _GW.password_workers  # Argon2 threads; 0: one per core
    password_queue: int = _GW.password_queue  # verifications waiting; more: 503 busy
    housekeeping_seconds: int = _GW.housekeeping_seconds
    captcha_max_rows: int = _GW.captcha_max_rows
    unknown_login_retention_hours: int = _POLICY.unknown_login_retention_hours
    unknown_login_max_rows: int = _POLICY.unknown_login_max_rows
    cmp_max_skew_seconds: int = _GW.cmp_max_skew_seconds
    cmp_replay_window_seconds: int = _GW.cmp_replay_window_seconds
    cmp_secret_days: int = _GW.cmp_secret_days

    @property
    def https(self) -> bool:
        """Browsers reach this gateway over HTTPS (``public_url``; TLS is terminated here or
        in front): answers carry HSTS and session cookies are ``__Host-``, Secure."""
        return self.public_url.startswith("https://")

    def __repr__(self) -> str:  # keep the session key out of logs
        return f"GatewayConfig(port={self.port}, public_url={self.public_url!r}, ...)"


# [gateway] and [policy] keys that the runtime object carries under the same name
_SAME_NAME = {f.name for f in dataclasses.fields(GatewayConfig)}


def _same_named(*sections: GatewaySection | PolicySection) -> dict[str, object]:
    """The settings copied as they are; the build step then sets those it derives."""
    return {
        name: getattr(sec, name)
        for sec in sections
        for name in sec.__struct_fields__
        if name in _SAME_NAME
    }


def _signers(cfg: RawConfig, gw: GatewaySection) -> tuple[str, ...]:
    """Relative ``unix:`` socket paths are relative to the configuration folder."""
    resolved = []
    for s in gw.signers:
        if s.startswith("unix:") and not s[5:].startswith("/"):
            s = f"unix:{cfg.resolve(s[5:])}"
        resolved.append(s)
    return tuple(resolved)


def _signer_tls(cfg: RawConfig, gw: GatewaySection, signers: tuple[str, ...]) -> ClientTls | None:
    """The client certificate for ``tls://`` signers. A ``tls://`` address without it is an
    error here: the gateway must never reach a signer over TCP without mutual TLS."""
    tls_signers = [s for s in signers if s.startswith("tls://")]
    for s in tls_signers:
        host, _, port = s[6:].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"[gateway] signers: {s!r} is not tls://HOST:PORT")
    cert, ca = gw.signer_tls_cert, gw.signer_tls_ca
    has_key = bool(gw.signer_tls_key_file or gw.signer_tls_key_env)
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
    names = {
        "signer_tls_key_file": gw.signer_tls_key_file,
        "signer_tls_key_env": gw.signer_tls_key_env,
    }
    key_pem = read_secret(cfg, names, "signer_tls_key", "gateway")
    assert key_pem is not None
    tls = ClientTls(cert=cfg.resolve(cert), key_pem=key_pem, ca=cfg.resolve(ca))
    try:
        tls.context()  # unreadable or mismatched files stop the start, not the first issuance
    except ValueError as exc:
        raise ConfigError(f"[gateway] signer_tls_*: {exc}") from exc
    return tls


def gateway_config(cfg: RawConfig, environ: dict[str, str] | None = None) -> GatewayConfig:
    """The gateway's runtime object from the file; ``DATABASE_URL`` in ``environ`` wins over
    ``[database] url``."""
    environ = dict(os.environ) if environ is None else environ
    gw = parse_section(cfg, "gateway", GatewaySection)
    db = parse_section(cfg, "database", DatabaseSection)
    pol = parse_section(cfg, "policy", PolicySection)
    smtp = parse_section(cfg, "smtp", SmtpSection)
    limits = parse_section(cfg, "ratelimit", RateLimits)
    log_level = gw.log_level.lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError("[gateway] log_level: debug, info, warning or error")
    signers = _signers(cfg, gw)
    url = configured_database_url(db, environ)
    password_file = db.password_file
    if not password_file and not url and not db.password_env:
        password_file = APP_PASSWORD_FILE  # the embedded cluster's (a var/ca.toml from before)
    values = _same_named(gw, pol)
    values.update(
        public_url=gw.url,
        log_level=log_level,
        signers=signers,
        signer_tls=_signer_tls(cfg, gw, signers),
        session_key_file=cfg.resolve(gw.session_key_file) if gw.session_key_file else None,
        database_url=url,
        embedded_pg_dir=embedded_database_dir(cfg, db, environ),
        database_user=db.user,
        database_password_file=cfg.resolve(password_file) if password_file else None,
        database_password_env=db.password_env,
        pool_min=db.pool_min,
        pool_max=db.pool_max,
        migrate_on_start=db.migrate_on_start,
        acquire_timeout=db.acquire_timeout,
        manifest_path=manifest_path(cfg),
        ocsp_fresh_burst=(
            gw.ocsp_fresh_per_second if gw.ocsp_fresh_burst is None else gw.ocsp_fresh_burst
        ),
        smtp_host=smtp.host.strip(),
        smtp_port=smtp.port,
        smtp_from=smtp.sender.strip() or _SMTP.sender,
        ratelimit=limits,
    )
    return GatewayConfig(**values)  # type: ignore[arg-type]


def with_session_key(cfg: GatewayConfig) -> GatewayConfig:
    """``cfg`` with the captcha pepper read (``session_key_env``, else ``session_key_file``).
    A configured file that cannot be read stops the start: a pepper that silently goes
    missing would make stored captcha answers guessable offline."""
    if cfg.session_key_env and os.environ.get(cfg.session_key_env):
        return dataclasses.replace(cfg, session_key=os.environ[cfg.session_key_env].encode())
    if cfg.session_key_file is None:
        return cfg
    secret = read_secret_file(cfg.session_key_file, "[gateway] session_key_file")
    return dataclasses.replace(cfg, session_key=secret.encode() or None)


def database_password(cfg: GatewayConfig) -> str | None:
    """The application role's password: ``password_env`` if set there, else the file's
    contents; None when neither is configured (a DSN that needs no password)."""
    if cfg.database_password_env and os.environ.get(cfg.database_password_env):
        return os.environ[cfg.database_password_env]
    if cfg.database_password_file is None:
        return None
    # a configured file that cannot be read stops the start, like every secret file
    return read_secret_file(cfg.database_password_file, "[database] password_file")


def database_url(cfg: GatewayConfig) -> str:
    """The DSN to use: the configured one, else the embedded cluster's (which must be running)."""
    if cfg.database_url:
        return cfg.database_url
    from db.embedded import Cluster

    assert cfg.embedded_pg_dir is not None
    return Cluster(cfg.embedded_pg_dir).dsn(user=cfg.database_user)
