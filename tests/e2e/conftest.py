"""The whole stack for browser tests: embedded PostgreSQL, the real signer daemon on a fresh
SoftHSM token, the ``ca-gateway`` process on a free port, and Debian's Chromium via Playwright.

Chromium is never downloaded: Playwright launches ``/usr/bin/chromium`` (installed by
``scripts/bootstrap.sh``). Screenshots go to ``test-output/screenshots/`` at the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from db import roles
from db.pool import connect
from db.queries import officers
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    db_credentials,
    pg_cluster,
    provision_database,
    role_dsn,
)
from tests.support.signer_proc import running_signer
from tests.support.softhsm import REPO, make_ca

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
OFFICER_LOGIN = "ra-e2e"
OFFICER_PASSWORD = "officer-e2e-password"
VALIDITY_DAYS = 10  # inside the 30-day renewal window from the start
SCREENSHOTS = REPO / "test-output" / "screenshots"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _prepare_db(dsn: str, creds: roles.Credentials) -> None:
    """Roles, ownership and migrations as ``make run`` does them; the officer as ca-admin."""
    await provision_database(dsn, creds)
    conn = await connect(role_dsn(dsn, roles.OWNER, creds.owner_password))
    try:
        await officers.insert(conn, OFFICER_LOGIN, PasswordHasher().hash(OFFICER_PASSWORD))
    finally:
        await conn.close()


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"ca-gateway exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"gateway not ready in {seconds}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _gateway(config: Path, env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """A ``ca-gateway`` process on ``port``; yields its base URL once /readyz answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "ca-gateway"), "--config", str(config)],
            env={**env, "CA_GATEWAY_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, proc, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def stack(
    pg_cluster: Any,  # noqa: F811
    db_credentials: roles.Credentials,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    config = make_ca(tmp / "ca", "rsa2048", port=port)
    name = f"e2e_{os.getpid()}_{port}"
    dsn = pg_cluster.create_database(name)
    asyncio.run(_prepare_db(dsn, db_credentials))
    # the gateway as in production: the application role, its password from a file
    password_file = tmp / "ca" / roles.APP_PASSWORD_FILE
    roles.ensure_password_file(password_file)
    password_file.write_text(db_credentials.app_password + "\n", encoding="utf-8")
    log = tmp / "gateway.log"
    env = {
        **os.environ,
        "CA_GATEWAY_CAPTCHA": "off",
        "CA_POLICY_CERTIFICATE_VALIDITY_DAYS": str(VALIDITY_DAYS),
        "DATABASE_URL": dsn.replace("postgresql://ca@", f"postgresql://{roles.APP}@", 1),
        "CA_DATABASE_PASSWORD_FILE": str(password_file),
        "CA_CONFIG": str(config),
    }
    try:
        with running_signer(config, workers=1, log=tmp / "signer.log"):
            with _gateway(config, env, port, log) as base:
                # ca-admin is the operator's: the owner role, never the gateway's
                admin_env = {
                    **env,
                    "DATABASE_URL": role_dsn(dsn, roles.OWNER, db_credentials.owner_password),
                }
                yield {
                    "base": base,
                    "config": config,
                    "tmp": tmp,
                    "log": log,
                    "env": env,
                    "admin_env": admin_env,
                }
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture(scope="module")
def captcha_gateway(stack: dict[str, Any]) -> Iterator[str]:
    """A second gateway on the same database and signer, with the login captcha on."""
    env = {**stack["env"], "CA_GATEWAY_CAPTCHA": "on"}
    with _gateway(stack["config"], env, _free_port(), stack["tmp"] / "gateway-captcha.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return SCREENSHOTS
