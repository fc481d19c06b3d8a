"""Fixtures and helpers for the certificate-lifecycle tests: a real SoftHSM CA, the real
``ca-signer`` daemon, and the gateway wired to both. Bind the fixtures in a test module::

    from tests.integration import lifecycle
    ca_config = lifecycle.ca_config
    signer_process = lifecycle.signer_process
    signer = lifecycle.signer
    gateway_config = lifecycle.gateway_config

A module may set ``CA_KEY_TYPE`` (default rsa2048) and ``GATEWAY_OVERRIDES``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from config.loader import load
from config.manifest import manifest_path
from gateway import terms
from gateway.config import GatewayConfig, RateLimits
from signer.client import SignerClient
from tests.support.signer_proc import running_signer, socket_of
from tests.support.softhsm import make_ca

BIN = Path(sys.executable).parent
TESTDATA = Path(__file__).resolve().parents[1] / "testdata" / "csr"
PEM = serialization.Encoding.PEM


@pytest.fixture(scope="module")
def ca_config(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return make_ca(tmp_path_factory.mktemp("ca"), getattr(request.module, "CA_KEY_TYPE", "rsa2048"))


@pytest.fixture(scope="module")
def signer_process(ca_config: Path) -> Iterator[Any]:
    with running_signer(ca_config, workers=1) as proc:
        yield proc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def signer(signer_process: Any, ca_config: Path) -> AsyncIterator[SignerClient]:
    client = SignerClient([f"unix:{socket_of(ca_config)}"], timeout=5)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def gateway_config(app_url: str, ca_config: Path, request: pytest.FixtureRequest) -> GatewayConfig:
    overrides = getattr(request.module, "GATEWAY_OVERRIDES", {})
    return dataclasses.replace(
        GatewayConfig(
            captcha=False,
            database_url=app_url,
            migrate_on_start=False,
            manifest_path=manifest_path(load(ca_config, environ={})),
            ratelimit=RateLimits.off(),
        ),  # one 127.0.0.1 on a still clock
        **overrides,
    )


# -- keys, CSRs, proofs -----------------------------------------------------------------------


def new_key(kind: str = "rsa") -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(key: Any) -> str:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ignored")])
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return req.public_bytes(PEM).decode()


def csr_der(pem: str) -> bytes:
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)


def old_key_signature(key: Any, challenge_b64: str, csr: str) -> str:
    message = base64.b64decode(challenge_b64) + csr_der(csr)
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = key.sign(message, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(sig).decode()


def read_csr_file(name: str) -> str:
    return (TESTDATA / name).read_text()


async def apply(client: Any, usage: str, csr: str, **over: Any) -> Any:
    body = {"usage": usage, "csr": csr, "terms_version": terms.VERSION, **over}
    return await client.call("POST", "/api/v1/certificates", body)


# -- external tools, run without blocking the event loop (the gateway runs in it) ------------


async def run(*args: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *[str(a) for a in args],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def pkilint_problems(pem_file: Path) -> list[Any]:
    _, out = await run(BIN / "lint_pkix_cert", "lint", "-s", "WARNING", "-f", "JSON", pem_file)
    report = json.loads(out)
    return [f for f in report["results"] if f.get("finding_descriptions")]
