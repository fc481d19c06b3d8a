"""The typed sections of the configuration file: one frozen Struct per TOML table.

A section's Struct is its schema and its defaults table at once: the keys it may have (any other
is an error, a typo in a security setting must not be silently ignored), their types and bounds
(``Meta``), and the value each takes when the file leaves it out. ``parse_section`` converts the
table into it (``msgspec.convert``); checks between keys live in ``__post_init__``, checks that
need more than the section (files, other sections) in the component's build step.

Environment overrides (``CA_<SECTION>_<KEY>``, ``config/loader.py``) arrive as text when the
file does not have the key: an integer setting reads ``"60"``, a boolean ``on``/``off``,
``true``/``false``, ``yes``/``no`` or ``1``/``0``, and a list a comma-separated string.

The sections read by more than one component live here: ``[gateway]`` (the signer reads its
``public_url``), ``[database]`` (the gateway and ca-admin), ``[policy]`` (the signer checks its
CRL validity), ``[ca]`` (the CA folder everyone reads, the ceremonies' parameters), and the
gateway's own ``[smtp]`` and ``[ratelimit]`` next to them. ``[signer]`` is the signer's
(``signer/config.py``), ``[profiles.*]`` the signer's profiles (``signer/issuance/profile.py``);
tables that come from other files (the issuer manifest, ceremony files) go through the same
``convert_table``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta
from msgspec import inspect as mi

from config.loader import ConfigError, RawConfig

Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]
MAX_VALIDITY_DAYS = 1095  # the signer profiles' ceiling

S = TypeVar("S", bound=msgspec.Struct)


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every section: immutable, keyword-only, unknown keys refused."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SEQUENCES = (mi.ListType, mi.VarTupleType, mi.TupleType, mi.SetType, mi.FrozenSetType)


def _from_text(value: Any, kind: mi.Type) -> Any:
    """Give text (an environment override, or a string in the file) the field's shape:
    ``on``/``off`` for a boolean, a comma-separated list for a list. Fields that take text as
    it is keep it; numbers are left to ``msgspec`` (lax mode reads ``"60"`` as 60)."""
    if not isinstance(value, str):
        return value
    kinds = kind.types if isinstance(kind, mi.UnionType) else (kind,)
    if any(isinstance(k, mi.StrType | mi.LiteralType) for k in kinds):
        return value
    if any(isinstance(k, mi.BoolType) for k in kinds):
        lowered = value.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else value
    if any(isinstance(k, _SEQUENCES) for k in kinds):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?:\.(?P<key>[^`\[]+))?(?P<rest>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`")
_ENUM = re.compile(r"^Invalid enum value ")


def _choices(schema: type[msgspec.Struct], key: str) -> tuple[str, ...]:
    """The values a ``Literal`` field allows, in the order the schema writes them."""
    for field in msgspec.structs.fields(schema):
        if field.encode_name == key:
            return tuple(str(v) for v in get_args(field.type))
    return ()


def _message(name: str, schema: type[msgspec.Struct], exc: msgspec.ValidationError) -> str:
    """msgspec's message, said as ``[section] key: what`` like every other config error."""
    text = str(exc)
    unknown = _UNKNOWN.match(text)
    if unknown:
        return f"[{name}]: unknown key(s) {unknown['key']}"
    m = _AT.match(text)
    assert m is not None  # the pattern matches any text
    if m["key"] and _ENUM.match(m["what"]) and not m["rest"]:
        return f"[{name}] {m['key']} must be one of {', '.join(_choices(schema, m['key']))}"
    what = m["what"][:1].lower() + m["what"][1:]
    if m["key"]:
        return f"[{name}] {m['key']}{m['rest']}: {what}"
    return f"[{name}]: {what}"


def convert_table(data: Any, name: str, schema: type[S], origin: str = "") -> S:
    """One TOML table as a ``schema`` Struct, or a ConfigError that says ``[name] key: what``
    (after ``origin``, the file, when the table is not from the configuration file). Unknown
    keys are all named at once, so one run shows every typo."""
    prefix = f"{origin}: " if origin else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}[{name}] must be a table")
    fields = {f.encode_name: f.type for f in mi.type_info(schema).fields}  # type: ignore[attr-defined]
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ConfigError(f"{prefix}[{name}]: unknown key(s) {', '.join(unknown)}")
    table = {k: _from_text(v, fields[k]) for k, v in data.items()}
    try:
        return msgspec.convert(table, schema, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(prefix + _message(name, schema, exc)) from exc


def parse_section(cfg: RawConfig, name: str, schema: type[S]) -> S:
    """Table ``[name]`` of the file (with its overrides) as a ``schema`` Struct, or a
    ConfigError that names the section and the key."""
    return convert_table(cfg.section(name), name, schema)


class GatewaySection(Section):
    """``[gateway]``: the gateway daemon (``gateway/config.py`` builds its runtime object)."""

    host: str = "127.0.0.1"
    port: Port = 8080
    public_url: str = ""  # empty: http://127.0.0.1:<port>
    captcha: bool = True
    signers: tuple[str, ...] = ()
    session_key_file: str = ""  # optional; peppers stored captcha answers
    session_key_env: str = ""
    session_idle_timeout: Positive = 15 * 60  # seconds
    session_absolute_timeout: Positive = 8 * 3600  # seconds
    captcha_ttl: Positive = 180  # seconds
    log_level: str = "info"
    crl_refresh_seconds: Positive = 300
    notice_interval_seconds: Positive = 300
    audit_checkpoint_seconds: NonNegative = 300  # signed audit checkpoints; 0: off
    pending_sweep_seconds: Positive = 10  # how often pending rows past their deadline resolve
    signer_tls_cert: str = ""  # the client certificate for tls:// signers
    signer_tls_key_file: str = ""
    signer_tls_key_env: str = ""
    signer_tls_ca: str = ""
    # "optional": officers with an enrolled factor must use it; "required": every officer
    officer_second_factor: Literal["optional", "required"] = "optional"
    password_workers: NonNegative = 0  # Argon2 threads; 0: one per core
    password_queue: NonNegative = 16  # verifications waiting beyond those; more: 503 busy
    housekeeping_seconds: Positive = 60  # purge of expired sessions, captchas, counters
    captcha_max_rows: Positive = 100_000  # stored captchas kept at most (newest first)
    # fresh OCSP signatures per second and saved up at most (default: one second's worth)
    ocsp_fresh_per_second: NonNegative = 50
    ocsp_fresh_burst: NonNegative | None = None
    cmp_max_skew_seconds: Positive = 300  # CMP messageTime must be this close to the clock
    cmp_replay_window_seconds: Positive = 900  # (transactionID, senderNonce) pairs remembered
    cmp_secret_days: Positive = 14  # lifetime of a one-time CMP enrolment secret

    def __post_init__(self) -> None:
        if self.cmp_replay_window_seconds < self.cmp_max_skew_seconds:
            raise ValueError(
                "cmp_replay_window_seconds must not be below cmp_max_skew_seconds (a replay "
                "must be refused until its messageTime is too old)"
            )

    @property
    def url(self) -> str:
        """Where browsers reach the gateway: ``public_url``, else the local port."""
        return self.public_url.rstrip("/") or f"http://127.0.0.1:{self.port}"


class DatabaseSection(Section):
    """``[database]``: the gateway's application role and ca-admin's owner role."""

    url: str = ""  # empty: the embedded cluster under <config folder>/pg (DATABASE_URL wins)
    pool_min: NonNegative = 1
    pool_max: Positive = 10
    migrate_on_start: bool = False  # the owner migrates (ca-admin migrate), not the gateway
    user: str = "ca_app"  # the application role (db/roles.py) on the embedded cluster
    password_file: str = ""
    password_env: str = ""
    owner: str = "ca_owner"  # ca-admin's role: migrations, tables, triggers
    owner_password_file: str = ""
    owner_password_env: str = ""
    acquire_timeout: Positive = 5  # seconds a request waits for a pooled connection, then 503


DATABASE_URL_ENV = "DATABASE_URL"


def database_url(
    db: DatabaseSection | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The DSN the configuration names: ``DATABASE_URL`` (in ``environ``) wins over
    ``[database] url``; empty when neither does, meaning the embedded cluster. The gateway,
    ca-admin and ``make run`` agree through this one rule (``db`` None: the environment only,
    for callers that have no file yet)."""
    environ = os.environ if environ is None else environ
    return environ.get(DATABASE_URL_ENV) or (db.url if db is not None else "")


def embedded_database_dir(
    cfg: RawConfig, db: DatabaseSection, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The embedded cluster's folder (``<config folder>/pg``), or None when a DSN is set."""
    return None if database_url(db, environ) else cfg.base_dir / "pg"


class PolicySection(Section):
    """``[policy]``: what the RA allows subscribers and officers."""

    renewal_window_days: Positive = 30
    certificate_validity_days: Annotated[int, Meta(ge=1, le=MAX_VALIDITY_DAYS)] = 365
    password_min: Positive = 6
    password_max: Positive = 16
    login_max_failures: Positive = 3
    officer_max_failures: Positive = 5
    crl_next_update_hours: Positive = 24
    unknown_login_retention_hours: Positive = 24  # counters of names that do not exist
    unknown_login_max_rows: Positive = 100_000  # ... kept at most, per table

    def __post_init__(self) -> None:
        if self.password_max < self.password_min:
            raise ValueError("password_max must not be below password_min")


class SmtpSection(Section):
    """``[smtp]``: renewal notices (an empty host switches them off)."""

    host: str = ""
    port: Annotated[int, Meta(ge=1, le=65535)] = 25
    sender: str = msgspec.field(default="ca@localhost", name="from")


LIMIT_KEYS = (
    "login_per_address",
    "login_per_account",
    "officer_login_per_address",
    "officer_login_per_account",
    "password_per_address",
    "password_per_account",
    "captcha_per_address",
)


class RateLimits(Section):
    """``[ratelimit]``: token buckets in PostgreSQL, shared by every gateway. Each limit is
    the number of attempts one source address (IPv6: its /64) or one account may make per
    ``window_seconds``, refilled evenly; ``0`` switches that limit off. They come before the
    lock, never instead of it: an attempt over a limit is not evaluated at all."""

    window_seconds: Positive = 60
    login_per_address: NonNegative = 60  # subscriber logins
    login_per_account: NonNegative = 10
    officer_login_per_address: NonNegative = 30
    officer_login_per_account: NonNegative = 10
    password_per_address: NonNegative = 30  # password changes (guesses of the old password)
    password_per_account: NonNegative = 10
    captcha_per_address: NonNegative = 120  # GET /api/v1/captcha (renders an image, a row)
    # the client address from this header (e.g. "X-Forwarded-For"), only when the peer is one
    # of ``trusted_proxies`` (addresses or networks); empty: the peer address, always
    proxy_header: str = ""
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "proxy_header", self.proxy_header.strip())
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {proxy!r} is no address") from exc
        if self.proxy_header and not self.trusted_proxies:
            raise ValueError(
                "proxy_header needs trusted_proxies (the proxies whose header is believed); "
                "anyone could set it otherwise"
            )

    @classmethod
    def off(cls) -> RateLimits:
        """Every limit switched off (tests of other things, benchmarks)."""
        return cls(**dict.fromkeys(LIMIT_KEYS, 0))

    def limit(self, name: str) -> int:
        return int(getattr(self, name))


CaDays = Annotated[int, Meta(ge=1, le=36500)]


class CaSection(Section):
    """``[ca]``: the CA folder and the parameters of the ceremonies that fill it (the dev
    ceremony's CAs, the role keys' labels and types, the root CRL's lifetime). Key types are
    checked where keys are made (``hsm_config/keygen.py``)."""

    dir: str = "ca"  # issuer certificates and issuers.toml, relative to the config file
    key_type: str = "rsa2048"  # the dev ceremony's and rotations' CA keys
    organization: str = "Development CA"  # the dev ceremony's subject O (empty: none)
    country: str = ""  # ... and C
    root_validity_days: CaDays = 7300
    issuing_validity_days: CaDays = 3650
    audit_key_label: str = "audit-1"  # signs audit checkpoints only
    audit_key_type: str = "p256"
    cmp_key_label: str = "cmp-1"  # signs CMP answers only
    cmp_key_type: str = "p256"
    root_crl_days: Annotated[int, Meta(ge=1, le=3660)] = 365  # nextUpdate of the root CRL
