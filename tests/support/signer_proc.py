"""Start the real ``ca-signer`` daemon for a test and stop it afterwards."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from config.loader import load
from signer.client import SignerClient

BIN = Path(sys.executable).parent


def socket_of(config: Path) -> Path:
    cfg = load(config)
    return cfg.resolve(str(cfg.section("signer")["socket"]))


async def _healthy(sock: Path, want_ready: int) -> bool:
    client = SignerClient([f"unix:{sock}"], timeout=2)
    try:
        body = await client.health()
        ready = sum(1 for w in body["workers"] if w["state"] == "ready")
        return ready >= want_ready
    except Exception:
        return False
    finally:
        await client.close()


def _check(sock: Path, want_ready: int) -> bool:
    """Run the async check on a private loop in a thread, so async tests can call this too."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _healthy(sock, want_ready)).result()


def wait_healthy(sock: Path, want_ready: int, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if sock.exists() and _check(sock, want_ready):
            return
        time.sleep(0.2)
    raise TimeoutError(f"signer at {sock} not healthy within {seconds}s")


@contextlib.contextmanager
def running_signer(
    config: Path, *, workers: int = 2, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``ca-signer`` on ``config``; yields the process once every worker is ready."""
    full_env = dict(os.environ)
    full_env["CA_SIGNER_WORKERS"] = str(workers)
    full_env.update(env or {})
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(BIN / "ca-signer"), "--config", str(config)],
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    try:
        sock = Path(full_env["CA_SIGNER_SOCKET"]) if "CA_SIGNER_SOCKET" in (env or {}) else None
        wait_healthy(sock or socket_of(config), workers)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]
