"""CMP enrolment with Debian's ``openssl cmp`` as the client, against the real gateway, signer
daemon (SoftHSM) and PostgreSQL: ``ir`` and ``p10cr`` with the one-time enrolment secret,
``certConf``/``pkiConf``, and the refusals (each a CMP error ``openssl cmp`` reports, with
nothing issued)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration import lifecycle
from tests.integration.conftest import register
from tests.integration.lifecycle import new_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process
gateway_config = lifecycle.gateway_config
PEM = serialization.Encoding.PEM


async def openssl_cmp(*args: str | Path, secret: str | None = None) -> tuple[int, str]:
    """``openssl cmp`` with the secret in its environment (never on the command line)."""
    env = dict(os.environ)
    extra: list[str] = []
    if secret is not None:
        env["CMP_SECRET"] = secret
        extra = ["-secret", "env:CMP_SECRET"]
    proc = await asyncio.create_subprocess_exec(
        "openssl", "cmp", *[str(a) for a in args], *extra, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def write_key(path: Path, kind: str = "rsa") -> Any:
    key = new_key(kind)
    path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


async def cmp_secret(officer: Any, subscriber_id: int) -> dict[str, Any]:
    r = await officer.call("POST", f"/api/v1/ra/subscribers/{subscriber_id}/cmp-secret")
    assert r.status == 201, r.text
    return r.json


def server_args(base_url: str, profile: str | None) -> list[str]:
    host = base_url.removeprefix("http://")
    path = ".well-known/cmp" + (f"/p/{profile}" if profile else "")
    return ["-server", host, "-path", path]


async def test_ir_with_secret(base_url: str, officer: Any, tmp_path: Path) -> None:
    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    write_key(tmp_path / "k.pem")
    rc, out = await openssl_cmp(
        "-cmd", "ir", *server_args(base_url, "signing"), "-ref", issued["reference"],
        "-newkey", tmp_path / "k.pem", "-subject", "/CN=ignored",
        "-certout", tmp_path / "c.pem", "-unprotected_errors", secret=issued["secret"])
    print(out)
    assert rc == 0, out
