"""`make run`: set up (or reuse) everything under var/ and run signer + gateway in the foreground.

First run: a config file, random secrets, a SoftHSM token, the key ceremony (root + issuing CA on
the token), an embedded PostgreSQL cluster with the schema and a first RA officer. Later runs
reuse all of it. Ctrl-C stops everything this script started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("CA_VAR_DIR", REPO / "var")).resolve()
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


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


def main() -> int:
    config = ensure_config()
    os.environ["CA_CONFIG"] = str(config)
    ensure_softhsm()
    run("ca-keys", "init-token", "--exist-ok")
    run("ca-keys", "dev-ceremony")

    from devstack_db import ensure_first_officer, start_database

    if os.environ.get("DATABASE_URL"):
        stop_db = None
        say("using DATABASE_URL")
    else:
        dsn, stop_db = start_database(VAR)
        os.environ["DATABASE_URL"] = dsn
    run("ca-admin", "migrate")
    run("ca-admin", "audit", "import-journal")  # key ceremonies into the hash-chained log
    officer = ensure_first_officer(config)

    from hsm_config.config import load

    cfg = load(config)
    gw = cfg.section("gateway")
    port = int(gw.get("port", 8080))
    url = str(gw.get("public_url") or f"http://127.0.0.1:{port}")
    children: list[subprocess.Popen[bytes]] = []
    try:
        signer = subprocess.Popen([str(BIN / "ca-signer")])
        children.append(signer)
        socket = cfg.resolve(str(cfg.section("signer").get("socket", "run/signer.sock")))
        wait_for(lambda: socket.exists() or signer.poll() is not None, "the signer")
        if signer.poll() is not None:
            raise SystemExit("[make run] the signer exited; see its messages above")
        gateway = subprocess.Popen([str(BIN / "ca-gateway")])
        children.append(gateway)
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthz") or gateway.poll() is not None,
            "the gateway",
        )
        if gateway.poll() is not None:
            raise SystemExit("[make run] the gateway exited; see its messages above")
        say("")
        say(f"portal:      {url}/")
        say(f"RA officer:  {url}/ra/")
        if officer:
            say(f"first RA login: {officer[0]}  password: {officer[1]}")
            say(f"(kept in {VAR / 'secrets/ra-admin.password'})")
        say("Ctrl-C stops signer, gateway and database.")
        stop = {"now": False}

        def on_signal(signum: int, frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop["now"]:
            for child in children:
                if child.poll() is not None:
                    say(f"{Path(str(child.args[0])).name} exited with {child.returncode}")
                    stop["now"] = True
            time.sleep(0.5)
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if stop_db is not None:
            stop_db()
        say("stopped")
    return 0


if __name__ == "__main__":
    if shutil.which("softhsm2-util") is None:
        raise SystemExit("softhsm2 is missing: run `make run`, which installs it")
    sys.exit(main())
