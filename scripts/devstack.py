"""`make run`: set up (or reuse) everything under var/ and run signer + gateway in the foreground.

First run: a config file, random secrets, a SoftHSM token, the key ceremony (root + issuing CA on
the token), an embedded PostgreSQL cluster with the schema and a first RA officer. Later runs
reuse all of it. Ctrl-C (or SIGTERM) stops everything this script started.

As root, the daemons run under their own users (``config/identities.py``): ``ca-signer``
owns the token, its PINs and the SoftHSM config; ``ca-gateway`` owns the gateway's secrets and
reaches the signer's socket through the group ``ca-signer-clients``; both run from the shared
runtime in /opt/hsm-ca/venv (``scripts/runtime.py``). Without root everything runs as the
invoking user and each daemon warns at start that the identity boundary is off.
A daemon that exits unexpectedly is restarted with backoff (``scripts/supervise.py``); the other
daemon and PostgreSQL keep running.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import tomli_w

REPO = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("CA_VAR_DIR", REPO / "var")).resolve()
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from supervise import DaemonSpec, Supervisor  # noqa: E402

from config.identities import (  # noqa: E402
    GATEWAY_USER,
    SHARED_IDENTITY_ENV,
    SIGNER_CLIENTS_GROUP,
    SIGNER_USER,
    Identity,
    ensure_identities,
    identity,
)

AS_ROOT = os.geteuid() == 0
DB_APP_PASSWORD = "secrets/db-app.password"  # noqa: S105 -- a file name (DB roles add it)


def say(msg: str) -> None:
    print(f"[make run] {msg}", flush=True)


def write_secret(path: Path, value: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def ensure_config() -> Path:
    config = VAR / "ca.toml"
    if not config.exists():
        VAR.mkdir(parents=True, exist_ok=True)
        data = tomllib.loads((REPO / "ca.example.toml").read_text())
        config.write_text(tomli_w.dumps(data))
        say(f"wrote {config} (edit it to change ports, key type, profiles)")
    write_secret(VAR / "secrets/token.pin", secrets.token_hex(8))
    write_secret(VAR / "secrets/token.so-pin", secrets.token_hex(8))
    # the root CA key's own token ([roottoken]), opened only by ca-keys ceremonies
    write_secret(VAR / "secrets/root-token.pin", secrets.token_hex(8))
    write_secret(VAR / "secrets/root-token.so-pin", secrets.token_hex(8))
    write_secret(VAR / "secrets/session.key", secrets.token_hex(32))
    return config


def ensure_softhsm() -> None:
    conf = VAR / "softhsm2.conf"
    tokens = VAR / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not conf.exists():
        template = (REPO / "softhsm/softhsm2.conf.template").read_text()
        conf.write_text(template.replace("@TOKENDIR@", str(tokens)))
    os.environ["SOFTHSM2_CONF"] = str(conf)


def run(*cmd: str) -> None:
    subprocess.run([str(BIN / cmd[0]), *cmd[1:]], check=True)


def wait_for(check, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"[make run] {what} did not come up within {seconds:.0f}s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 -- our own localhost
            return resp.status == 200
    except OSError:
        return False


# -- identities and file ownership (root only) ----------------------------------------------


def service_identities() -> dict[str, Identity | None]:
    """As root: the accounts the daemons run under (created if missing); else run as we are."""
    if not AS_ROOT:
        me = pwd.getpwuid(os.geteuid()).pw_name
        say(f"not root: signer and gateway both run as {me!r}; the identity boundary is off")
        return {"ca-signer": None, "ca-gateway": None}
    ensure_identities()
    clients_gid = grp.getgrnam(SIGNER_CLIENTS_GROUP).gr_gid
    signer = identity(SIGNER_USER)
    # the signer gives its socket to ca-signer-clients, so it must be in that group itself
    signer = Identity(signer.user, signer.uid, signer.gid, (clients_gid,))
    return {"ca-signer": signer, "ca-gateway": identity(GATEWAY_USER)}


def check_reachable(folder: Path) -> None:
    """Service users must be able to walk down to var/: refuse a clone under /root early."""
    for parent in [folder, *folder.parents]:
        if not parent.stat().st_mode & 0o001:
            raise SystemExit(
                f"[make run] {parent} is not searchable by other users, so ca-signer and "
                f"ca-gateway cannot reach {folder}; set CA_VAR_DIR to a folder outside it"
            )


def _own(path: Path, user: str, mode: int, *, group: str | None = None) -> None:
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    os.chown(path, pw.pw_uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


def _own_tree(top: Path, user: str) -> None:
    for dirpath, _dirs, files in os.walk(top):
        _own(Path(dirpath), user, 0o700)
        for name in files:
            path = Path(dirpath) / name
            os.chown(path, *_ids(user), follow_symlinks=False)
            os.chmod(path, 0o600)


def _ids(user: str) -> tuple[int, int]:
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


def _inside_var(path: Path) -> bool:
    return path.resolve().is_relative_to(VAR)


def apply_ownership(cfg: Any) -> None:
    """Give each secret to the one daemon that needs it (root runs; repeated every start)."""
    os.chmod(VAR, VAR.stat().st_mode | 0o711)  # noqa: S103 -- enter only; files say who reads
    os.chmod(cfg.path, 0o644)  # no secrets in it; both daemons read it
    secrets_dir = VAR / "secrets"
    os.chown(secrets_dir, 0, 0)
    os.chmod(secrets_dir, 0o711)  # noqa: S103 -- enter, not list; each file says who reads it
    token = cfg.section("token")
    for key in ("pin_file", "so_pin_file"):
        if token.get(key) and _inside_var(cfg.resolve(token[key])):
            _own(cfg.resolve(token[key]), SIGNER_USER, 0o600)
    _own_tree(VAR / "tokens", SIGNER_USER)
    _own(VAR / "softhsm2.conf", SIGNER_USER, 0o600)
    gateway_secrets = [cfg.section("gateway").get("session_key_file"), DB_APP_PASSWORD]
    for value in gateway_secrets:
        if value and cfg.resolve(value).exists() and _inside_var(cfg.resolve(value)):
            _own(cfg.resolve(value), GATEWAY_USER, 0o600)
    socket = cfg.section("signer").get("socket")
    if socket and _inside_var(cfg.resolve(socket)):
        run_dir = cfg.resolve(socket).parent
        run_dir.mkdir(parents=True, exist_ok=True)
        _own(run_dir, SIGNER_USER, 0o750, group=SIGNER_CLIENTS_GROUP)
    # the signer's own files: OCSP responder certificates and its audit checkpoint ledger
    signer = cfg.section("signer")
    for folder in (
        cfg.resolve(str(signer.get("state_dir") or "signer-state")),
        cfg.resolve(str(signer.get("audit_checkpoint_file") or "audit/checkpoints.jsonl")).parent,
    ):
        if _inside_var(folder):
            folder.mkdir(parents=True, exist_ok=True)
            _own_tree(folder, SIGNER_USER)


def let_gateway_reach_database(pg_root: Path) -> None:
    """Open the embedded cluster's socket to the gateway's group where it is closed.

    The cluster keeps its folder and socket to the ``postgres`` user (0700); the gateway, now
    another user, must reach the socket. Only adds the gateway group's bits, so a cluster
    whose socket is already open to every local user (password authentication) is unchanged.
    """
    gid = grp.getgrnam(GATEWAY_USER).gr_gid
    for path, bits in (
        (pg_root, 0o010),
        (pg_root / "run", 0o010),
        (pg_root / "run" / ".s.PGSQL.5432", 0o020),
    ):
        st = path.stat()
        other = 0o001 if bits == 0o010 else 0o002
        if st.st_mode & other:
            continue
        os.chown(path, -1, gid)
        os.chmod(path, (st.st_mode & 0o7777) | bits)


# -- the daemons ---------------------------------------------------------------------------


def daemon_bin() -> Path:
    """Root: the shared runtime the service users can execute; else this virtualenv."""
    if not AS_ROOT:
        return BIN
    from runtime import ensure_runtime

    return ensure_runtime(say=say)


def _base_env(ident: Identity | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    if ident is None:
        env[SHARED_IDENTITY_ENV] = "1"  # each daemon warns once that the boundary is off
    else:
        env.pop(SHARED_IDENTITY_ENV, None)
        env["HOME"] = "/nonexistent"  # no home: nothing to read or write there
        env["USER"] = env["LOGNAME"] = ident.user
    return env


def signer_spec(bin_dir: Path, cfg: Any, ident: Identity | None) -> DaemonSpec:
    env = _base_env(ident)
    env.pop("DATABASE_URL", None)  # the signer has no business with the database
    sec = cfg.section("signer")
    if ident is not None:  # who may connect: the socket's group, checked with SO_PEERCRED
        if not sec.get("socket_group"):
            env.setdefault("CA_SIGNER_SOCKET_GROUP", SIGNER_CLIENTS_GROUP)
        if not sec.get("allowed_gids"):
            env.setdefault("CA_SIGNER_ALLOWED_GIDS", SIGNER_CLIENTS_GROUP)
    cwd = "/" if ident is not None else None
    return DaemonSpec("ca-signer", [str(bin_dir / "ca-signer")], env, ident, cwd)


def gateway_spec(bin_dir: Path, ident: Identity | None) -> DaemonSpec:
    env = _base_env(ident)
    env.pop("SOFTHSM2_CONF", None)  # the gateway never opens a token
    cwd = "/" if ident is not None else None
    return DaemonSpec("ca-gateway", [str(bin_dir / "ca-gateway")], env, ident, cwd)


def start_daemons(sup: Supervisor, bin_dir: Path, cfg: Any, ids: dict[str, Any]) -> None:
    """Signer first (its socket must exist), then the gateway; fail fast if either cannot."""
    socket = cfg.resolve(str(cfg.section("signer").get("socket", "run/signer.sock")))
    socket.unlink(missing_ok=True)  # a stale one (make run killed) would look like a ready signer
    signer = sup.start(signer_spec(bin_dir, cfg, ids["ca-signer"]))
    wait_for(lambda: socket.exists() or signer.poll() is not None, "the signer")
    if signer.poll() is not None:
        raise SystemExit("[make run] the signer exited; see its messages above")
    gateway = sup.start(gateway_spec(bin_dir, ids["ca-gateway"]))
    port = int(cfg.section("gateway").get("port", 8080))
    wait_for(
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz") or gateway.poll() is not None,
        "the gateway",
    )
    if gateway.poll() is not None:
        raise SystemExit("[make run] the gateway exited; see its messages above")


def supervise_until_stopped(sup: Supervisor) -> None:
    """Restart what dies until SIGINT or SIGTERM."""
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["now"]:
        sup.poll()
        time.sleep(0.1)


def announce(cfg: Any, officer: tuple[str, str] | None) -> None:
    gw = cfg.section("gateway")
    port = int(gw.get("port", 8080))
    url = str(gw.get("public_url") or f"http://127.0.0.1:{port}")
    say("")
    say(f"portal:      {url}/")
    say(f"RA officer:  {url}/ra/")
    if officer:
        say(f"first RA login: {officer[0]}  password: {officer[1]}")
        say(f"(kept in {VAR / 'secrets/ra-admin.password'})")
    say("Ctrl-C stops signer, gateway and database.")


def main() -> int:
    config = ensure_config()
    os.environ["CA_CONFIG"] = str(config)
    ensure_softhsm()
    ids = service_identities()
    if AS_ROOT:
        check_reachable(VAR)
    run("ca-keys", "init-token", "--exist-ok")
    run("ca-keys", "dev-ceremony")

    from devstack_db import ensure_first_officer, start_database

    from config.sections import database_url
    from db.roles import ensure_roles

    if database_url():  # DATABASE_URL, as the gateway and ca-admin read it
        stop_db = None
        say("using DATABASE_URL")
    else:
        dsn, stop_db = start_database(VAR)
        ensure_roles(config, dsn)  # owner + application role (db/roles.py); no DATABASE_URL
        if AS_ROOT:
            let_gateway_reach_database(VAR / "pg")
    run("ca-admin", "migrate")
    run("ca-admin", "audit", "import-journal")  # key ceremonies into the hash-chained log
    officer = ensure_first_officer(config)

    from config.loader import load

    cfg = load(config)
    if AS_ROOT:
        apply_ownership(cfg)
    sup = Supervisor(say)
    try:
        start_daemons(sup, daemon_bin(), cfg, ids)
        announce(cfg, officer)
        supervise_until_stopped(sup)
    finally:
        sup.stop()  # newest first: the gateway's last audit checkpoint needs the signer still up
        if stop_db is not None:
            stop_db()
        say("stopped")
    return 0


if __name__ == "__main__":
    if shutil.which("softhsm2-util") is None:
        raise SystemExit("softhsm2 is missing: run `make run`, which installs it")
    sys.exit(main())
