"""``make run`` as root: each daemon under its own user, the signer's socket checked by peer
credentials, and supervision that brings a killed daemon back without touching the rest.

One real ``scripts/devstack.py run`` for the module (a fresh var/ in a temporary folder, free
ports): token, dev ceremony, embedded PostgreSQL, signer and gateway from /opt/hsm-ca/venv.
The tests run in file order; the last one stops the stack with SIGINT.
"""

from __future__ import annotations

import contextlib
import grp
import http.cookiejar
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.identities import GATEWAY_USER, SIGNER_CLIENTS_GROUP, SIGNER_USER, identity
from gateway import terms
from tests.integration.conftest import subscriber_body
from tests.integration.lifecycle import csr_pem, new_key

REPO = Path(__file__).resolve().parents[2]
RUNTIME_PYTHON = "/opt/hsm-ca/venv/bin/python"
BACK_WITHIN = 5.0  # seconds from kill -9 to serving again (issue 15)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="service identities need root (CI runs as root)"),
    pytest.mark.timeout(240),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    var: Path
    port: int
    metrics_port: int
    log: Path

    def child(self, name: str) -> int:
        """The pid of the daemon ``name`` that make run started (a direct child)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
                if ppid == self.proc.pid and name in (entry / "cmdline").read_bytes().decode():
                    return int(entry.name)
        raise LookupError(f"no {name} under make run (pid {self.proc.pid})")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def postmaster(self) -> int:
        return int((self.var / "pg/data/postmaster.pid").read_text().split()[0])

    def refused(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = r.read().decode()
        return float(re.search(r"^ca_signer_refused_peers_total (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    var = Path(tempfile.mkdtemp(prefix="ca-devstack-"))
    os.chmod(var, 0o755)  # the service users walk through it
    log = var.with_suffix(".log")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CA_") and k not in ("SOFTHSM2_CONF", "DATABASE_URL")
    }
    env.update(
        CA_VAR_DIR=str(var),
        CA_GATEWAY_PORT=str(free_port()),
        CA_SIGNER_METRICS_PORT=str(free_port()),
        CA_GATEWAY_CAPTCHA="off",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "scripts/devstack.py"), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    s = Stack(proc, var, int(env["CA_GATEWAY_PORT"]), int(env["CA_SIGNER_METRICS_PORT"]), log)
    try:
        end = time.monotonic() + 180
        while "Ctrl-C stops" not in s.output():
            assert proc.poll() is None, f"make run exited:\n{s.output()[-3000:]}"
            assert time.monotonic() < end, f"make run did not come up:\n{s.output()[-3000:]}"
            time.sleep(0.2)
        yield s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(var, ignore_errors=True)
        log.unlink(missing_ok=True)


# -- HTTP, as a browser would ---------------------------------------------------------------


class Browser:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.csrf: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.stack.url(path), data, headers, method=method)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except OSError as exc:  # the gateway is down: no HTTP status at all
            return 0, str(exc)


def ready_subscriber(stack: Stack) -> Browser:
    """Registered by the first RA officer, logged in, password changed: ready to apply."""
    officer = Browser(stack)
    password = (stack.var / "secrets/ra-admin.password").read_text().strip()
    status, body = officer.call(
        "POST", "/api/v1/ra/session", {"login": "ra-admin", "password": password}
    )
    assert status == 200, body
    officer.csrf = body["csrf_token"]
    status, slip = officer.call("POST", "/api/v1/ra/subscribers", subscriber_body())
    assert status == 201, slip
    sub = Browser(stack)
    status, body = sub.call(
        "POST",
        "/api/v1/session",
        {"account": slip["account"], "password": slip["initial_password"]},
    )
    assert status == 200, body
    sub.csrf = body["csrf_token"]
    status, body = sub.call(
        "POST",
        "/api/v1/password",
        {"old_password": slip["initial_password"], "new_password": "s3cret-pw"},
    )
    assert status == 204, body
    return sub


def apply(sub: Browser) -> tuple[int, Any]:
    body = {"usage": "signing", "csr": csr_pem(new_key("p256")), "terms_version": terms.VERSION}
    return sub.call("POST", "/api/v1/certificates", body)


def serving_again(stack: Stack, sub: Browser, since: float) -> float:
    """Seconds from ``since`` until /readyz is 200 and an application is issued."""
    while time.monotonic() - since < BACK_WITHIN:
        status, _ = Browser(stack).call("GET", "/readyz")
        if status == 200:
            status, body = apply(sub)
            if status == 201:
                assert body["status"] == "issued"
                return time.monotonic() - since
            assert status in (0, 503), body  # not up yet: retryable, never a 500
        time.sleep(0.05)
    raise AssertionError(f"not serving {BACK_WITHIN}s after the kill:\n{stack.output()[-3000:]}")


# -- running as someone else --------------------------------------------------------------


def run_as(user: str | int, code: str, *args: str, extra_groups: list[int] | None = None) -> Any:
    """Run ``code`` in the runtime's python under ``user``; returns what it prints (JSON)."""
    if isinstance(user, str):
        ident = identity(user)
        uid, gid, groups = ident.uid, ident.gid, list(ident.extra_groups)
    else:
        uid, gid, groups = user, user, []
    proc = subprocess.run(
        [RUNTIME_PYTHON, "-c", code, *args],
        user=uid,
        group=gid,
        extra_groups=extra_groups if extra_groups is not None else groups,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


TRY_FILES = """
import errno, json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
        out[path] = "ok"
    except OSError as exc:
        out[path] = errno.errorcode[exc.errno]
print(json.dumps(out))
"""

HEALTH = """
import json, socket, sys
from signer.codec import HEADER, Frame
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(Frame(id=1, op="health").encode())
    answer = s.recv(HEADER.size)
except (ConnectionResetError, BrokenPipeError):
    answer = b""
print(json.dumps({"answered": len(answer) == HEADER.size}))
"""


def alive(pid: int) -> bool:
    """Running, not a zombie: the postmaster's parent (pg_ctl) is gone, and whoever inherits
    it here (PID 1 of a container) may never reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def proc_ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    status = Path(f"/proc/{pid}/status").read_text()

    def field(name: str) -> list[int]:
        return [int(x) for x in re.search(rf"^{name}:\s*(.*)$", status, re.M).group(1).split()]  # type: ignore[union-attr]

    return field("Uid"), field("Gid"), field("Groups")


# -- the tests, in order ---------------------------------------------------------------------


def test_each_daemon_runs_under_its_own_user(stack: Stack) -> None:
    signer_uid, signer_gid = pwd.getpwnam(SIGNER_USER)[2:4]
    gateway_uid, gateway_gid = pwd.getpwnam(GATEWAY_USER)[2:4]
    clients = grp.getgrnam(SIGNER_CLIENTS_GROUP).gr_gid
    signer = stack.child("ca-signer")
    uids, gids, _ = proc_ids(signer)
    assert uids == [signer_uid] * 4 and gids == [signer_gid] * 4  # real, effective, saved, fs
    workers = [int(p) for p in Path(f"/proc/{signer}/task/{signer}/children").read_text().split()]
    assert workers and all(proc_ids(w)[0] == [signer_uid] * 4 for w in workers)
    uids, gids, groups = proc_ids(stack.child("ca-gateway"))
    assert uids == [gateway_uid] * 4 and gids == [gateway_gid] * 4
    assert clients in groups
    assert "identity boundary off" not in stack.output()


def test_each_secret_belongs_to_the_daemon_that_needs_it(stack: Stack) -> None:
    var = stack.var

    def owner_mode(path: str) -> tuple[str, str, int]:
        st = (var / path).lstat()
        return (
            pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode),
        )

    assert owner_mode("tokens") == (SIGNER_USER, SIGNER_USER, 0o700)
    assert owner_mode("secrets/token.pin") == (SIGNER_USER, SIGNER_USER, 0o600)
    assert owner_mode("secrets/token.so-pin") == (SIGNER_USER, SIGNER_USER, 0o600)
    assert owner_mode("softhsm2.conf") == (SIGNER_USER, SIGNER_USER, 0o600)
    assert owner_mode("secrets/session.key") == (GATEWAY_USER, GATEWAY_USER, 0o600)
    assert owner_mode("run") == (SIGNER_USER, SIGNER_CLIENTS_GROUP, 0o750)
    assert owner_mode("run/signer.sock") == (SIGNER_USER, SIGNER_CLIENTS_GROUP, 0o660)

    paths = [
        str(var / p)
        for p in ("secrets/token.pin", "secrets/token.so-pin", "tokens", "softhsm2.conf")
    ]
    seen = run_as(GATEWAY_USER, TRY_FILES, *paths, str(var / "ca.toml"))
    assert seen == {**dict.fromkeys(paths, "EACCES"), str(var / "ca.toml"): "ok"}
    seen = run_as(SIGNER_USER, TRY_FILES, str(var / "secrets/session.key"), str(var / "tokens"))
    assert seen == {str(var / "secrets/session.key"): "EACCES", str(var / "tokens"): "ok"}


def test_the_signer_refuses_peers_by_credentials_not_only_by_file_mode(stack: Stack) -> None:
    sock = stack.var / "run/signer.sock"
    nobody = pwd.getpwnam("nobody").pw_uid
    clients = grp.getgrnam(SIGNER_CLIENTS_GROUP).gr_gid
    # the gateway's user gets answers: the check does not just refuse everyone
    assert run_as(GATEWAY_USER, HEALTH, str(sock)) == {"answered": True}
    before = stack.refused()
    run_dir_mode = stat.S_IMODE(sock.parent.stat().st_mode)
    os.chmod(sock.parent, 0o755)  # widen the file permissions: only SO_PEERCRED stands in the way
    os.chmod(sock, 0o666)
    try:
        assert run_as(nobody, HEALTH, str(sock)) == {"answered": False}
        assert stack.refused() == before + 1
        # the same uid in the allowed group (a supplementary group, SO_PEERGROUPS) is let in
        assert run_as(nobody, HEALTH, str(sock), extra_groups=[clients]) == {"answered": True}
        assert stack.refused() == before + 1
    finally:
        os.chmod(sock, 0o660)
        os.chmod(sock.parent, run_dir_mode)
    assert re.search(
        rf"refused a connection on the Unix socket from pid \d+ uid {nobody} ", stack.output()
    )


def test_a_killed_signer_is_back_and_serving_within_5s(stack: Stack) -> None:
    postmaster = stack.postmaster()
    gateway = stack.child("ca-gateway")
    sub = ready_subscriber(stack)
    old = stack.child("ca-signer")
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    took = serving_again(stack, sub, t0)
    assert stack.child("ca-signer") != old
    assert stack.child("ca-gateway") == gateway  # the gateway was left alone
    assert stack.postmaster() == postmaster and alive(postmaster)
    assert "ca-signer exited unexpectedly (signal SIGKILL); restart #1" in stack.output()
    print(f"signer back and serving after {took:.2f}s")


def test_a_killed_gateway_is_back_and_serving_within_5s(stack: Stack) -> None:
    postmaster = stack.postmaster()
    signer = stack.child("ca-signer")
    sub = ready_subscriber(stack)
    sub_session_survives = sub  # sessions live in PostgreSQL, not in the gateway
    old = stack.child("ca-gateway")
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    took = serving_again(stack, sub_session_survives, t0)
    assert stack.child("ca-gateway") != old
    assert stack.child("ca-signer") == signer
    assert stack.postmaster() == postmaster and alive(postmaster)
    assert "ca-gateway exited unexpectedly (signal SIGKILL); restart #1" in stack.output()
    print(f"gateway back and serving after {took:.2f}s")


def test_sigint_stops_everything(stack: Stack) -> None:
    pids = [stack.child("ca-signer"), stack.child("ca-gateway"), stack.postmaster()]
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(30) == 0
    assert [pid for pid in pids if alive(pid)] == []
    assert stack.output().rstrip().endswith("[make run] stopped")
