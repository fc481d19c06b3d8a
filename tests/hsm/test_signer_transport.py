"""How gateways reach signers: mutual TLS over TCP, and failover across several signers; how
the daemon starts its workers."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from config.loader import load
from gateway.composition import _default_signer
from gateway.config import gateway_config
from signer.client import SignerClient
from signer.devcerts import TransportFiles, make_transport_certs
from signer.errors import ErrorKind, SignerError
from signer.protocol import IssueRequest
from tests.support.signer_proc import running_signer, socket_of
from tests.support.softhsm import make_ca


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


# -- mutual TLS -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsSigner:
    config: Path  # signer and gateway sections both set up for TLS
    port: int
    metrics_port: int
    log: Path
    files: TransportFiles
    stranger: TransportFiles  # another transport CA altogether

    def refused(self, reason: str) -> float:
        """``ca_signer_tls_refused_total{reason}`` scraped from the daemon."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "ca_signer_tls_refused_total"
                    and sample.labels.get("reason") == reason
                ):
                    return sample.value
        return 0.0

    async def refused_reaches(self, reason: str, value: float) -> float:
        """The counter once it reaches ``value`` (or after 5 s): the client may see the TLS
        alert a moment before the daemon counts the refusal."""
        for _ in range(50):
            got = self.refused(reason)
            if got >= value:
                return got
            await asyncio.sleep(0.1)
        return got

    def context(self, who: str, files: TransportFiles | None = None) -> ssl.SSLContext:
        files = files or self.files
        ctx = ssl.create_default_context(cafile=str(self.files.ca))
        ctx.load_cert_chain(str(files.clients[who].cert), str(files.clients[who].key))
        return ctx


@pytest.fixture(scope="module")
def tls_signer(ca_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSigner]:
    """One ``ca-signer`` on TCP with mutual TLS. Its transport CA issued three clients: the
    gateway (pinned by fingerprint), ops (pinned by subject) and intruder (not pinned)."""
    d = tmp_path_factory.mktemp("tls")
    files = make_transport_certs(
        d / "pki", server_names=("127.0.0.1",), clients=("gateway", "ops", "intruder")
    )
    stranger = make_transport_certs(d / "other-pki", clients=("gateway",))
    port, metrics_port = free_port(), free_port()
    data = tomllib.loads(ca_config.read_text(encoding="utf-8"))
    data["signer"].update(
        {
            "socket": str(d / "signer.sock"),
            "tcp": f"127.0.0.1:{port}",
            "tls_cert": str(files.server.cert),
            "tls_key": str(files.server.key),
            "tls_client_ca": str(files.ca),
            "tls_allowed_clients": [
                files.clients["gateway"].fingerprint,
                files.clients["ops"].subject,
            ],
            "metrics_port": metrics_port,
        }
    )
    data["gateway"].update(
        {
            "signers": [f"tls://127.0.0.1:{port}"],
            "signer_tls_cert": str(files.clients["gateway"].cert),
            "signer_tls_key_file": str(files.clients["gateway"].key),
            "signer_tls_ca": str(files.ca),
        }
    )
    config = d / "ca.toml"
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    log = d / "signer.log"
    with running_signer(config, workers=1, log=log):
        yield TlsSigner(config, port, metrics_port, log, files, stranger)


async def _issue_with(ctx: ssl.SSLContext, port: int) -> bytes:
    client = SignerClient([f"tls://127.0.0.1:{port}"], ssl_context=ctx, timeout=5)
    try:
        return await client.issue(_request(SPKI))
    finally:
        await client.close()


async def test_the_gateway_issues_over_mutual_tls_with_its_configured_certificate(
    tls_signer: TlsSigner,
) -> None:
    """The gateway's own config path: [gateway] signer_tls_* -> the client it builds."""
    cfg = gateway_config(load(tls_signer.config, environ={}), environ={})
    assert cfg.signers == (f"tls://127.0.0.1:{tls_signer.port}",)
    client = _default_signer(cfg)
    try:
        der = await client.issue(_request(SPKI))  # type: ignore[attr-defined]
        health = await client.health()
    finally:
        await client.close()
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string().endswith("TW")
    assert health["address"] == f"tls://127.0.0.1:{tls_signer.port}"


async def test_a_client_pinned_by_subject_is_served(tls_signer: TlsSigner) -> None:
    der = await _issue_with(tls_signer.context("ops"), tls_signer.port)
    assert x509.load_der_x509_certificate(der)


async def test_a_client_of_the_same_ca_that_is_not_pinned_is_refused(
    tls_signer: TlsSigner,
) -> None:
    before = tls_signer.refused("not_allowed")
    with pytest.raises(SignerError) as err:
        await _issue_with(tls_signer.context("intruder"), tls_signer.port)
    assert err.value.kind is ErrorKind.UNAVAILABLE
    assert await tls_signer.refused_reaches("not_allowed", before + 1) == before + 1
    log = tls_signer.log.read_text()
    assert f"({tls_signer.files.clients['intruder'].fingerprint}) is not in" in log


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
async def test_a_client_without_a_certificate_from_the_client_ca_fails_the_handshake(
    tls_signer: TlsSigner, who: str
) -> None:
    if who == "no certificate":
        ctx = ssl.create_default_context(cafile=str(tls_signer.files.ca))
    else:
        ctx = tls_signer.context("gateway", tls_signer.stranger)
    before = tls_signer.refused("handshake")
    with pytest.raises(SignerError) as err:
        await _issue_with(ctx, tls_signer.port)
    assert err.value.kind is ErrorKind.UNAVAILABLE
    # refused by TLS itself, not only by the pin
    assert await tls_signer.refused_reaches("handshake", before + 1) == before + 1
    assert "TLS handshake with" in tls_signer.log.read_text()


async def test_the_gateway_checks_the_signers_name_and_ca(tls_signer: TlsSigner) -> None:
    """The signer's certificate must chain to signer_tls_ca and name the host dialled."""
    cfg = gateway_config(load(tls_signer.config, environ={}), environ={})
    assert cfg.signer_tls is not None
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await asyncio.open_connection(
            "127.0.0.1",
            tls_signer.port,
            ssl=cfg.signer_tls.context(),
            server_hostname="signer.example",
        )
    other_ca = ssl.create_default_context(cafile=str(tls_signer.stranger.ca))
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", tls_signer.port, ssl=other_ca)


def test_a_tls_address_without_tls_settings_stops_the_gateway(tls_signer: TlsSigner) -> None:
    """``ca-gateway --check-config`` on the same file minus the signer_tls_* keys."""
    data = tomllib.loads(tls_signer.config.read_text(encoding="utf-8"))
    for key in ("signer_tls_cert", "signer_tls_key_file", "signer_tls_ca"):
        del data["gateway"][key]
    bare = tls_signer.config.with_name("no-tls.toml")
    bare.write_text(tomli_w.dumps(data), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CA_")}
    gateway = str(Path(sys.executable).parent / "ca-gateway")
    out = subprocess.run(
        [gateway, "--config", str(bare), "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout
    assert "needs signer_tls_cert" in out.stderr
    ok = subprocess.run(
        [gateway, "--config", str(tls_signer.config), "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr


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


@pytest.mark.parametrize("level", ["info", "warning"])
def test_workers_log_at_the_configured_level(tmp_path: Path, level: str) -> None:
    """A worker issues its OCSP responder's certificate on a fresh CA and says so at info:
    the line is there at ``info`` and not at ``warning`` (workers logged at info whatever
    ``[signer] log_level`` said)."""
    config = make_ca(tmp_path / "ca", "p256")
    log = tmp_path / "signer.log"
    sock = tmp_path / "level.sock"
    env = {"CA_SIGNER_SOCKET": str(sock), "CA_SIGNER_LOG_LEVEL": level}
    with running_signer(config, workers=1, env=env, log=log):
        pass
    issued = [
        line for line in log.read_text().splitlines() if "responder certificate issued" in line
    ]
    assert bool(issued) is (level == "info"), log.read_text()


def test_an_unknown_worker_allocator_is_refused(ca_config: Path) -> None:
    env = {**os.environ, "CA_SIGNER_WORKER_ALLOCATOR": "jemalloc"}
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "ca-signer"),
            "--config",
            str(ca_config),
            "--check-config",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "worker_allocator must be one of tcmalloc, system" in out.stderr


def test_tcp_without_pinned_clients_stops_the_signer(tls_signer: TlsSigner) -> None:
    """Chaining to tls_client_ca is not enough: ``tcp`` without ``tls_allowed_clients`` is a
    configuration error, not a signer that serves every certificate of that CA."""
    data = tomllib.loads(tls_signer.config.read_text(encoding="utf-8"))
    del data["signer"]["tls_allowed_clients"]
    unpinned = tls_signer.config.with_name("unpinned.toml")
    unpinned.write_text(tomli_w.dumps(data), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CA_")}
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "ca-signer"),
            "--config",
            str(unpinned),
            "--check-config",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout
    assert "tls_allowed_clients" in out.stderr
