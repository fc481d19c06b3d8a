"""The offline root and the delegated OCSP responder, on the real signer daemon and SoftHSM.

The signer must run with the root token out of its reach, sign OCSP answers only with the
responder key (the metrics count C_Sign by key role), share one current responder certificate
between its workers, renew it before it runs out and never use one that is not valid now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import secrets
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from config.loader import load
from config.token import ROOT_TOKEN, token_config
from signer.client import SignerClient
from signer.config import load_signer_config
from signer.errors import ErrorKind, SignerError
from signer.hsm.keys import signature_hash
from signer.hsm.token import TokenHandle
from signer.issuance import build
from signer.issuance.registry import key_signatures, open_registry
from signer.protocol import CrlRequest, IssueRequest, OcspRequest
from tests.support.signer_proc import running_signer, socket_of
from tests.support.softhsm import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SUBJECT = (("2.5.4.6", "TW"), ("2.5.4.3", "responder test"))


def sign_one(run: Any, reg: build.Registry, req: Any) -> bytes:
    """One item through the batch pipeline a worker runs, its refusal raised."""
    (out,) = run(reg, [req])
    if isinstance(out, SignerError):
        raise out
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def token_folder(label: str) -> Path:
    """The SoftHSM folder of the token with ``label`` (its token.object names the label)."""
    conf = Path(os.environ["SOFTHSM2_CONF"]).read_text()
    tokendir = Path(conf.split("directories.tokendir =", 1)[1].split()[0])
    for folder in tokendir.iterdir():
        obj = folder / "token.object"
        if obj.exists() and label.encode() in obj.read_bytes():
            return folder
    raise LookupError(label)


@pytest.fixture(scope="module")
def online_only(ca_config: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A config without [roottoken] and a SoftHSM folder that holds a copy of the online token
    only: for the signer the root token does not exist and its PIN cannot be read."""
    base = tmp_path_factory.mktemp("online-only")
    data = tomllib.loads(ca_config.read_text())
    root = data.pop(ROOT_TOKEN)
    config = base / "ca.toml"
    config.write_text(tomli_w.dumps(data))
    tokens = base / "tokens"
    tokens.mkdir()
    online = token_folder(data["token"]["label"])
    shutil.copytree(online, tokens / online.name)
    conf = base / "softhsm2.conf"
    template = (REPO / "softhsm" / "softhsm2.conf.template").read_text()
    conf.write_text(template.replace("@TOKENDIR@", str(tokens)))
    listing = subprocess.run(
        ["pkcs11-tool", "--module", data["token"]["module"], "--list-token-slots"],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert data["token"]["label"] in listing and root["label"] not in listing
    return config, {"SOFTHSM2_CONF": str(conf)}


def ocsp_items(n: int, issuer: str = "issuing-1") -> list[OcspRequest]:
    now = int(time.time())
    return [
        OcspRequest(issuer, secrets.randbits(100) | 1 << 99, "good", now, now + 3600)
        for _ in range(n)
    ]


def issue_item(spki: bytes) -> IssueRequest:
    now = int(time.time())
    return IssueRequest(
        spki=spki,
        subject=SUBJECT,
        profile="signing",
        serial=secrets.randbits(127) | 1 << 126,
        not_before=now - 60,
        not_after=now + 30 * 86400,
    )


def spki() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def responder_of(der: bytes) -> x509.Certificate:
    resp = ocsp.load_der_ocsp_response(der)
    (cert,) = resp.certificates
    assert resp.responder_key_hash == (
        x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    )
    return cert


def test_signer_serves_without_the_root_token_and_ocsp_uses_no_ca_key(
    online_only: tuple[Path, dict],
) -> None:
    config, env = online_only
    port = free_port()
    with running_signer(config, workers=2, env={**env, "CA_SIGNER_METRICS_PORT": str(port)}):

        async def scenario() -> tuple[dict[str, float], dict[str, float], set[int], dict]:
            client = SignerClient([f"unix:{socket_of(config)}"])
            try:
                health = await client.health()
                # warm-up: every worker has answered once (connect-time signatures reported)
                for _ in range(4):
                    for r in await client.sign_ocsp(ocsp_items(8)):
                        r.unwrap()
                before = metrics(port)
                serials: set[int] = set()
                for r in await client.sign_ocsp(ocsp_items(40)):
                    serials.add(responder_of(r.unwrap()).serial_number)
                middle = metrics(port)
                cert = x509.load_der_x509_certificate(await client.issue(issue_item(spki())))
                assert cert.issuer.rfc4514_string().startswith("CN=Dev Issuing CA 1")
                now = int(time.time())
                crl = await client.sign_crl(CrlRequest("issuing-1", 7, now, now + 3600))
                assert x509.load_der_x509_crl(crl).issuer == cert.issuer
                with pytest.raises(SignerError) as refused:  # the root key is not here
                    await client.sign_crl(CrlRequest("root-1", 2, now, now + 3600))
                assert refused.value.kind is ErrorKind.UNKNOWN_ISSUER
                after = metrics(port)
                return before, middle, serials, {"after": after, "health": health}
            finally:
                await client.close()

        before, middle, serials, rest = asyncio.run(scenario())
    ca, resp = (
        'ca_signer_key_signatures_total{role="ca"}',
        'ca_signer_key_signatures_total{role="ocsp"}',
    )
    assert "root-1" in rest["health"]["issuers"]  # the chain knows the root, not its key
    # 40 OCSP answers: 40 responder-key signatures and not one by a CA key
    assert middle[resp] - before[resp] == 40
    assert middle[ca] - before[ca] == 0
    # one certificate and one CRL: two CA-key signatures, no responder-key one
    assert rest["after"][ca] - middle[ca] == 2
    assert rest["after"][resp] == middle[resp]
    assert len(serials) == 1  # both workers use the one current responder certificate


def _plant(ca_config: Path, kind: str) -> x509.Certificate:
    """Write a responder certificate that must not be used into the signer's state folder,
    signed by the issuing CA key (on the online token, opened here as a ceremony would)."""
    cfg = load(ca_config, environ={})
    scfg = load_signer_config(cfg)
    issuing = scfg.issuers["issuing-1"]
    handle = TokenHandle(token_config(cfg))
    handle.open()
    try:
        responder_public = handle.find_public_key("issuing-1-ocsp")
        if kind == "other_key":
            responder_public = ec.generate_private_key(ec.SECP256R1()).public_key()
        now = dt.datetime.now(dt.UTC)
        window = {
            "expired": (now - dt.timedelta(days=8), now - dt.timedelta(days=1)),
            "not_yet_valid": (now + dt.timedelta(days=1), now + dt.timedelta(days=8)),
            "other_key": (now - dt.timedelta(hours=1), now + dt.timedelta(days=6)),
        }[kind]
        key = handle.signing_key("issuing-1")
        cert = (
            x509.CertificateBuilder()
            .issuer_name(issuing.certificate.subject)
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, kind)]))
            .public_key(responder_public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(window[0])
            .not_valid_after(window[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .sign(key, signature_hash(issuing.certificate.public_key()))  # type: ignore[arg-type]
        )
    finally:
        handle.close()
    scfg.state_dir.mkdir(parents=True, exist_ok=True)
    (scfg.state_dir / "ocsp-issuing-1.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
    )
    return cert


@pytest.mark.parametrize("kind", ["expired", "not_yet_valid", "other_key"])
def test_a_responder_certificate_not_valid_now_is_never_used(ca_config: Path, kind: str) -> None:
    planted = _plant(ca_config, kind)
    with running_signer(ca_config, workers=1):

        async def ask() -> bytes:
            client = SignerClient([f"unix:{socket_of(ca_config)}"])
            try:
                (r,) = await client.sign_ocsp(ocsp_items(1))
                return r.unwrap()
            finally:
                await client.close()

        used = responder_of(asyncio.run(ask()))
    assert used.serial_number != planted.serial_number
    now = dt.datetime.now(dt.UTC)
    assert used.not_valid_before_utc <= now < used.not_valid_after_utc
    state = load_signer_config(load(ca_config, environ={})).state_dir / "ocsp-issuing-1.pem"
    assert x509.load_pem_x509_certificate(state.read_bytes()) == used  # replaced for all workers


@pytest.fixture
def registry_at(ca_config: Path, tmp_path: Path) -> Iterator[tuple[build.Registry, list[float]]]:
    """The worker's registry in this process, with an injected clock and its own state folder."""
    cfg = load(ca_config, environ={})
    scfg = dataclasses.replace(load_signer_config(cfg), state_dir=tmp_path / "state")
    handle = TokenHandle(token_config(cfg))
    handle.open()
    clock = [time.time()]
    try:
        yield open_registry(handle, scfg, clock=lambda: clock[0]), clock
    finally:
        handle.close()


def test_renewed_before_expiry_and_refused_when_not_valid(
    registry_at: tuple[build.Registry, list[float]],
) -> None:
    reg, clock = registry_at
    day = 86400.0

    def answer() -> x509.Certificate:
        now = int(clock[0])
        req = OcspRequest("issuing-1", secrets.randbits(100) | 1 << 99, "good", now, now + 600)
        return responder_of(sign_one(build.sign_ocsp_batch, reg, req))

    first = answer()
    # an answer may not outlive the certificate that vouches for it
    now = int(clock[0])
    too_long = OcspRequest(
        "issuing-1", 1 << 99, "good", now, int(first.not_valid_after_utc.timestamp()) + 1
    )
    with pytest.raises(SignerError) as refused:
        sign_one(build.sign_ocsp_batch, reg, too_long)
    assert refused.value.kind is ErrorKind.NO_RESPONDER
    life = first.not_valid_after_utc - first.not_valid_before_utc
    assert dt.timedelta(days=7) <= life <= dt.timedelta(days=7, minutes=5)  # [signer] default
    signed = key_signatures(reg)
    answer()
    assert key_signatures(reg) == {"ca": signed["ca"], "ocsp": signed["ocsp"] + 1}
    clock[0] += 4 * day  # three days left: more than a third of its life
    reg.responders.refresh(clock[0])
    assert answer() == first
    clock[0] += 1 * day  # two days left: less than a third; renewed
    reg.responders.refresh(clock[0])
    second = answer()
    assert second.serial_number != first.serial_number
    assert key_signatures(reg)["ca"] == signed["ca"] + 1  # the renewal, by the issuing CA key
    # without a refresh (no batch ran), a certificate outside its validity is refused, not used
    for moment in (
        second.not_valid_after_utc.timestamp() + 1,
        second.not_valid_before_utc.timestamp() - 1,
    ):
        clock[0] = moment
        with pytest.raises(SignerError) as refused:
            answer()
        assert refused.value.kind is ErrorKind.NO_RESPONDER
    clock[0] = second.not_valid_after_utc.timestamp() + 1
    reg.responders.refresh(clock[0])
    third = answer()
    assert (
        third.not_valid_before_utc.timestamp() <= clock[0] < third.not_valid_after_utc.timestamp()
    )
    third.verify_directly_issued_by(reg.issuers["issuing-1"].certificate)
    assert third.fingerprint(hashes.SHA256()) != second.fingerprint(hashes.SHA256())


def test_each_issuer_answers_with_its_own_responder_after_rotation(tmp_path: Path) -> None:
    """After ``ca-keys rotate`` (which opens the root token for the new issuing certificate)
    the retired issuer still answers OCSP, each issuer through a responder it certified."""
    from tests.support.softhsm import make_ca, run_ca_keys

    config = make_ca(tmp_path / "ca", "p256")
    rotated = run_ca_keys(config, "rotate", "--type", "p256")
    assert rotated.returncode == 0, rotated.stderr
    issuers = load_signer_config(load(config, environ={})).issuers
    with running_signer(config, workers=1):

        async def ask() -> list[bytes]:
            client = SignerClient([f"unix:{socket_of(config)}"])
            try:
                out = []
                for name in ("issuing-1", "issuing-2"):
                    (r,) = await client.sign_ocsp(ocsp_items(1, name))
                    out.append(r.unwrap())
                return out
            finally:
                await client.close()

        answers = asyncio.run(ask())
    seen = set()
    for name, der in zip(("issuing-1", "issuing-2"), answers, strict=True):
        responder = responder_of(der)
        responder.verify_directly_issued_by(issuers[name].certificate)
        seen.add(
            responder.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    assert len(seen) == 2  # two responder keys, one per issuer


def test_without_a_usable_state_folder_ocsp_is_refused_and_issuance_goes_on(
    ca_config: Path, tmp_path: Path
) -> None:
    """No responder certificate can be kept (the state folder cannot be made): OCSP answers
    are refused rather than signed some other way, certificates are still issued."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cfg = load(ca_config, environ={})
    scfg = dataclasses.replace(load_signer_config(cfg), state_dir=blocker / "state")
    handle = TokenHandle(token_config(cfg))
    handle.open()
    try:
        reg = open_registry(handle, scfg)
        now = int(time.time())
        with pytest.raises(SignerError) as refused:
            sign_one(
                build.sign_ocsp_batch, reg, OcspRequest("issuing-1", 1 << 99, "good", now, now + 60)
            )
        assert refused.value.kind is ErrorKind.NO_RESPONDER
        assert key_signatures(reg)["ocsp"] == 1  # the start-up test signature only
        der = sign_one(build.issue_batch, reg, issue_item(spki()))
        x509.load_der_x509_certificate(der).verify_directly_issued_by(
            reg.issuers["issuing-1"].certificate
        )
    finally:
        handle.close()
