"""How gateways reach signers: mutual TLS over TCP, and failover across several signers; how
the daemon starts its workers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer.client import SignerClient
from signer.errors import ErrorKind, SignerError
from signer.protocol import IssueRequest
from tests.support.signer_proc import running_signer, socket_of

PEM = serialization.Encoding.PEM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway transport CA (software keys: these guard the RPC, not certificates)."""
    d = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("rpc test CA", ca_key, None, ca=True)
    (d / "ca.crt").write_bytes(ca.public_bytes(PEM))
    for name, server in (("server", True), ("gateway", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(d / name, _cert(name, key, (ca.subject, ca_key), server=server), key)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "stranger", _cert("stranger", stranger_key, None), stranger_key)
    return d


def _request(spki: bytes) -> IssueRequest:
    now = int(time.time())
    return IssueRequest(
        spki=spki,
        subject=(("2.5.4.6", "TW"), ("2.5.4.3", "transport test")),
        profile="signing",
        serial=secrets.randbits(127) | (1 << 126),
        not_before=now - 60,
        not_after=now + 86400,
    )


SPKI = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)


def _client_context(tls_dir: Path, who: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    ctx.load_cert_chain(str(tls_dir / f"{who}.crt"), str(tls_dir / f"{who}.key"))
    return ctx


async def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_ca(
    ca_config: Path, tls_dir: Path
) -> None:
    port = free_port()
    env = {
        "CA_SIGNER_TCP": f"127.0.0.1:{port}",
        "CA_SIGNER_TLS_CERT": str(tls_dir / "server.crt"),
        "CA_SIGNER_TLS_KEY": str(tls_dir / "server.key"),
        "CA_SIGNER_TLS_CLIENT_CA": str(tls_dir / "ca.crt"),
    }
    with running_signer(ca_config, workers=1, env=env):
        good = SignerClient(
            [f"tls://127.0.0.1:{port}"], ssl_context=_client_context(tls_dir, "gateway")
        )
        try:
            der = await good.issue(_request(SPKI))
            assert x509.load_der_x509_certificate(der).subject.rfc4514_string().endswith("TW")
        finally:
            await good.close()
        for ctx in (
            _client_context(tls_dir, "stranger"),  # a certificate, but not from the RPC CA
            ssl.create_default_context(cafile=str(tls_dir / "ca.crt")),  # no certificate
        ):
            bad = SignerClient([f"tls://127.0.0.1:{port}"], ssl_context=ctx, timeout=3)
            try:
                with pytest.raises(SignerError) as err:
                    await bad.issue(_request(SPKI))
                assert err.value.kind is ErrorKind.UNAVAILABLE
            finally:
                await bad.close()


async def test_client_fails_over_to_the_signer_that_answers(
    ca_config: Path, tmp_path: Path
) -> None:
    """Two signer daemons on the same token; one address dead from the start, then the
    other one stopped mid-run: every call still gets a certificate from a live signer."""
    second_sock = tmp_path / "s2.sock"
    dead = tmp_path / "nobody-listens.sock"
    first = socket_of(ca_config)
    with running_signer(ca_config, workers=1):
        second = running_signer(ca_config, workers=1, env={"CA_SIGNER_SOCKET": str(second_sock)})
        second.__enter__()
        client = SignerClient([f"unix:{dead}", f"unix:{first}", f"unix:{second_sock}"], timeout=10)
        try:
            ders = await asyncio.gather(*(client.issue(_request(SPKI)) for _ in range(60)))
            assert len(ders) == 60
            second.__exit__(None, None, None)  # one live signer left
            ders = await asyncio.gather(*(client.issue(_request(SPKI)) for _ in range(60)))
            assert all(x509.load_der_x509_certificate(d) for d in ders)
            health = await client.health()
            assert health["address"] == f"unix:{first}"
        finally:
            await client.close()


@pytest.mark.parametrize("allocator", ["tcmalloc", "system"])
async def test_workers_run_with_the_configured_allocator(
    ca_config: Path, tmp_path: Path, allocator: str
) -> None:
    """The workers get tcmalloc by default (``make run`` installs it), the system malloc when
    the config says so; either way they sign, and the daemon keeps the system allocator."""
    sock = tmp_path / "alloc.sock"
    env = {"CA_SIGNER_SOCKET": str(sock), "CA_SIGNER_WORKER_ALLOCATOR": allocator}
    with running_signer(ca_config, workers=1, env=env) as daemon:
        client = SignerClient([f"unix:{sock}"], timeout=10)
        try:
            der = await client.issue(_request(SPKI))
            assert x509.load_der_x509_certificate(der)
            (worker,) = (await client.health())["workers"]
        finally:
            await client.close()
        maps = Path(f"/proc/{worker['pid']}/maps").read_text()
        assert ("libtcmalloc_minimal" in maps) is (allocator == "tcmalloc")
        assert "libtcmalloc_minimal" not in Path(f"/proc/{daemon.pid}/maps").read_text()


def test_an_unknown_worker_allocator_is_refused(ca_config: Path) -> None:
    env = {**os.environ, "CA_SIGNER_WORKER_ALLOCATOR": "jemalloc"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ca-signer"), "--config", str(ca_config),
         "--check-config"], env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "worker_allocator must be one of tcmalloc, system" in out.stderr
