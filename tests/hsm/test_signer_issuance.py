"""The real signer daemon on a real SoftHSM token: what it issues, and what it refuses.

Certificates are checked the way a relying party would: `openssl verify` against the chain,
pkilint's RFC 5280 linter, and the extensions the profile promises.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp

from config.loader import load
from config.manifest import load_manifest, manifest_path
from signer.client import SignerClient
from signer.codec import wire_form
from signer.errors import ErrorKind, SignerError
from signer.protocol import CrlRequest, IssueRequest, OcspRequest, RevokedEntry
from tests.support.signer_proc import running_signer, socket_of

BIN = Path(sys.executable).parent
DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
SUBJECT = (("2.5.4.6", "TW"), ("2.5.4.10", "Example Co"), ("2.5.4.3", "A123456789-63-YIRU"))


def spki_of(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    return key.public_key().public_bytes(DER, SPKI)


def request(spki: bytes, profile: str = "signing", **kw: object) -> IssueRequest:
    now = int(time.time())
    fields: dict[str, object] = {
        "spki": spki,
        "subject": SUBJECT,
        "profile": profile,
        "serial": secrets.randbits(127) | (1 << 126),
        "not_before": now - 60,
        "not_after": now + 365 * 86400,
    }
    fields.update(kw)
    return IssueRequest(**fields)  # type: ignore[arg-type]


def chain_files(config: Path) -> tuple[Path, Path]:
    entries = {e.role: e for e in load_manifest(manifest_path(load(config)))}
    return entries["root"].certificate_path, entries["issuing"].certificate_path


@pytest.fixture(scope="module", params=["rsa", "ec"])
def signer_env(request: pytest.FixtureRequest) -> Iterator[tuple[Path, SignerClient]]:
    config: Path = request.getfixturevalue(
        "ca_config" if request.param == "rsa" else "ca_config_ec"
    )
    with running_signer(config, workers=2):
        yield config, SignerClient([f"unix:{socket_of(config)}"])


@pytest.fixture
async def client(signer_env: tuple[Path, SignerClient]) -> SignerClient:
    # a fresh client per test: connections belong to the test's event loop
    config, _ = signer_env
    c = SignerClient([f"unix:{socket_of(config)}"])
    yield c
    await c.close()


SUBJECT_KEYS = {
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
    "rsa3072": lambda: rsa.generate_private_key(65537, 3072),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
}


@pytest.mark.parametrize("profile", ["signing", "encryption"])
@pytest.mark.parametrize("key_type", sorted(SUBJECT_KEYS))
async def test_issued_certificate_verifies_lints_and_follows_profile(
    signer_env: tuple[Path, SignerClient],
    client: SignerClient,
    tmp_path: Path,
    profile: str,
    key_type: str,
) -> None:
    config, _ = signer_env
    subject_key = SUBJECT_KEYS[key_type]()
    req = request(spki_of(subject_key), profile)
    der = await client.issue(req)
    cert = x509.load_der_x509_certificate(der)

    root, issuing = chain_files(config)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", root, "-untrusted", issuing, leaf],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    lint = subprocess.run(
        [BIN / "lint_pkix_cert", "lint", "-s", "WARNING", "-f", "JSON", leaf],
        capture_output=True,
        text=True,
    )
    report = json.loads(lint.stdout)  # pkilint prints a JSON report even when all is well
    findings = report["results"]
    problems = [f for f in findings if f.get("finding_descriptions")]
    assert problems == [], problems

    assert cert.serial_number == req.serial
    assert cert.subject.rfc4514_string() == "CN=A123456789-63-YIRU,O=Example Co,C=TW"
    assert cert.public_key() == subject_key.public_key()
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    is_ec = key_type.startswith("p")
    if profile == "signing":
        assert ku.value.digital_signature and ku.value.content_commitment
        assert not ku.value.key_encipherment and not ku.value.key_agreement
    elif is_ec:
        assert ku.value.key_agreement and not ku.value.digital_signature
    else:
        assert ku.value.key_encipherment and ku.value.data_encipherment
        assert not ku.value.digital_signature
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia] == [
        "http://127.0.0.1:8080/ocsp",
        "http://127.0.0.1:8080/ca/issuing-1.crt",
    ]
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == "http://127.0.0.1:8080/crl/issuing-1.crl"
    issuer_cert = x509.load_pem_x509_certificate(issuing.read_bytes())
    cert.verify_directly_issued_by(issuer_cert)


def _weak_keys() -> dict[str, bytes]:
    from cryptography.hazmat.primitives.asymmetric import dsa

    return {
        "rsa1024": spki_of(rsa.generate_private_key(65537, 1024)),
        "rsa_e3": spki_of(rsa.generate_private_key(3, 2048)),
        "p521": spki_of(ec.generate_private_key(ec.SECP521R1())),
        "secp256k1": spki_of(ec.generate_private_key(ec.SECP256K1())),
        "ed25519": spki_of(ed25519.Ed25519PrivateKey.generate()),
        "dsa": dsa.generate_private_key(2048).public_key().public_bytes(DER, SPKI),
    }


async def test_weak_and_unsupported_subject_keys_are_refused(client: SignerClient) -> None:
    for name, spki in _weak_keys().items():
        with pytest.raises(SignerError) as err:
            await client.issue(request(spki))
        assert err.value.kind is ErrorKind.WEAK_KEY, name
        assert not err.value.retryable


async def test_requests_outside_the_profile_are_refused(client: SignerClient) -> None:
    spki = spki_of(ec.generate_private_key(ec.SECP256R1()))
    now = int(time.time())
    cases = {
        "too long": (request(spki, not_after=now + 4000 * 86400), ErrorKind.PROFILE_VIOLATION),
        "backdated": (request(spki, not_before=now - 30 * 86400), ErrorKind.PROFILE_VIOLATION),
        "ends first": (request(spki, not_after=now - 120), ErrorKind.PROFILE_VIOLATION),
        "at the ceiling": (
            request(spki, profile="signing", not_after=now - 60 + 1095 * 86400),
            None,  # exactly the profile's 1095 days is allowed
        ),
        "unknown profile": (request(spki, profile="ca"), ErrorKind.UNKNOWN_PROFILE),
        "root issues": (request(spki, issuer="root-1"), ErrorKind.UNKNOWN_ISSUER),
        "no such issuer": (request(spki, issuer="nope"), ErrorKind.UNKNOWN_ISSUER),
        "bad attribute": (
            request(spki, subject=(("2.5.4.3", "x"), ("1.2.3.4", "y"))),
            ErrorKind.PROFILE_VIOLATION,
        ),
        "empty subject": (request(spki, subject=()), ErrorKind.PROFILE_VIOLATION),
        "short serial": (request(spki, serial=12345), ErrorKind.BAD_REQUEST),
        "garbage key": (request(b"\x30\x03\x02\x01\x01"), ErrorKind.BAD_REQUEST),
    }
    for name, (req, kind) in cases.items():
        if kind is None:
            assert await client.issue(req), name
            continue
        with pytest.raises(SignerError) as err:
            await client.issue(req)
        assert err.value.kind is kind, name


async def test_the_wire_cannot_ask_for_a_ca_flag_or_extensions(client: SignerClient) -> None:
    spki = spki_of(ec.generate_private_key(ec.SECP256R1()))
    for extra in ({"ca": True}, {"key_usage": ["keyCertSign"]}, {"extensions": []}):
        item = wire_form(request(spki)) | extra
        (result,) = await client._call("issue", [item], None)
        assert result.error is not None and result.error.kind is ErrorKind.PROFILE_VIOLATION


async def test_concurrent_calls_are_batched_and_all_answered(
    signer_env: tuple[Path, SignerClient], client: SignerClient
) -> None:
    config, _ = signer_env
    issuing = x509.load_pem_x509_certificate(chain_files(config)[1].read_bytes())
    keys = [spki_of(ec.generate_private_key(ec.SECP256R1())) for _ in range(8)]
    reqs = [request(keys[i % 8]) for i in range(300)]
    import asyncio

    ders = await asyncio.gather(*(client.issue(r) for r in reqs))
    certs = [x509.load_der_x509_certificate(d) for d in ders]
    assert [c.serial_number for c in certs] == [r.serial for r in reqs]
    for c in certs:
        c.verify_directly_issued_by(issuing)
    # the client coalesced 300 calls into far fewer RPCs
    assert len(client._tasks) == 0
    health = await client.health()
    assert health["status"] == "ok" and health["queue"] == 0


async def test_deadline_that_cannot_be_met_is_shed(client: SignerClient) -> None:
    spki = spki_of(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SignerError) as err:
        await client.issue(request(spki), deadline=time.time() - 1)
    assert err.value.kind is ErrorKind.OVERLOADED and err.value.retryable


async def test_crl_is_signed_and_openssl_accepts_it(
    signer_env: tuple[Path, SignerClient], client: SignerClient, tmp_path: Path
) -> None:
    config, _ = signer_env
    root, issuing = chain_files(config)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    req = request(spki_of(leaf_key))
    cert = x509.load_der_x509_certificate(await client.issue(req))
    now = int(time.time())
    crl_der = await client.sign_crl(
        CrlRequest(
            issuer="issuing-1",
            crl_number=7,
            this_update=now,
            next_update=now + 3600,
            entries=(
                RevokedEntry(req.serial, now - 10, "keyCompromise"),
                RevokedEntry(secrets.randbits(100) | 1 << 99, now - 20, "unspecified"),
            ),
        )
    )
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    revoked = crl.get_revoked_certificate_by_serial_number(req.serial)
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "chain.pem"
    chain.write_bytes(issuing.read_bytes() + root.read_bytes())
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            chain,
            "-CRLfile",
            tmp_path / "crl.pem",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "certificate revoked" in out.stdout + out.stderr


def _verifies(pub: object, resp: ocsp.OCSPResponse) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(
                resp.signature,
                resp.tbs_response_bytes,
                padding.PKCS1v15(),
                resp.signature_hash_algorithm,
            )
        else:
            assert isinstance(pub, ec.EllipticCurvePublicKey)
            pub.verify(
                resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm)
            )
    except InvalidSignature:
        return False
    return True


async def test_ocsp_responses_verify_and_carry_status_and_nonce(
    signer_env: tuple[Path, SignerClient], client: SignerClient
) -> None:
    config, _ = signer_env
    issuing = x509.load_pem_x509_certificate(chain_files(config)[1].read_bytes())
    now = int(time.time())
    serial = secrets.randbits(120) | 1 << 119
    nonce = secrets.token_bytes(16)
    results = await client.sign_ocsp(
        [
            OcspRequest("issuing-1", serial, "good", now, now + 3600, nonce=nonce),
            OcspRequest("issuing-1", serial, "revoked", now, now + 3600, now - 5, "superseded"),
            OcspRequest("issuing-1", serial, "unknown", now, now + 3600),
        ]
    )
    statuses = []
    for res in results:
        resp = ocsp.load_der_ocsp_response(res.unwrap())
        assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert resp.serial_number == serial
        # signed by the delegated responder, whose certificate comes with the response and
        # is named by the responder ID; never by the issuing CA key
        (responder,) = resp.certificates
        responder.verify_directly_issued_by(issuing)
        eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]
        responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
        assert (
            resp.responder_key_hash
            == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
        )
        assert _verifies(responder.public_key(), resp)
        assert not _verifies(issuing.public_key(), resp)
        statuses.append(resp.certificate_status)
    assert statuses == [
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
        ocsp.OCSPCertStatus.UNKNOWN,
    ]
    first = ocsp.load_der_ocsp_response(results[0].unwrap())
    assert first.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    second = ocsp.load_der_ocsp_response(results[1].unwrap())
    assert second.revocation_reason is x509.ReasonFlags.superseded


async def test_an_applicant_overtakes_a_bulk_presigning_run(client: SignerClient) -> None:
    """Pre-signing sends hundreds of OCSP items marked bulk; an issuance request that arrives
    behind them is signed after the few small bulk batches already on the workers."""
    now = int(time.time())
    calls, per_call = 100, 16
    done: list[int] = []

    async def bulk_call(n: int) -> None:
        reqs = [
            OcspRequest("issuing-1", secrets.randbits(100) | 1 << 99, "good", now, now + 3600)
            for _ in range(per_call)
        ]
        for res in await client.sign_ocsp(reqs, time.time() + 60, bulk=True):
            res.unwrap()
        done.append(n)

    tasks = [asyncio.create_task(bulk_call(n)) for n in range(calls)]
    for _ in range(5000):  # until the bulk items are waiting in the signer
        health = await client.health()
        if health["queue"] + health.get("bulk_queue", 0):
            break
        await asyncio.sleep(0.001)
    before = len(done)
    der = await client.issue(request(spki_of(ec.generate_private_key(ec.SECP256R1()))))
    after = len(done)
    await asyncio.gather(*tasks)
    assert x509.load_der_x509_certificate(der).serial_number > 0
    assert len(done) == calls
    # Without the bulk lane the applicant queues behind every bulk item (after == calls).
    # With it, it waits for the batches already on the workers (two of 16 each per worker)
    # and whatever the other worker finishes meanwhile: a handful, never half the rest.
    waited = after - before
    assert waited < (calls - before) / 2, f"{waited} of {calls - before} bulk calls went first"


async def test_malformed_frames_get_errors_and_the_connection_survives(
    signer_env: tuple[Path, SignerClient], client: SignerClient
) -> None:
    import asyncio
    import struct

    config, _ = signer_env
    reader, writer = await asyncio.open_unix_connection(str(socket_of(config)))
    try:
        import msgpack

        for payload in (
            b"\xc1garbage",
            msgpack.packb({"v": 99, "id": 1, "op": "health"}),
            msgpack.packb([1, 2, 3]),
        ):
            writer.write(struct.pack(">I", len(payload)) + payload)
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            answer = msgpack.unpackb(await reader.readexactly(length))
            assert answer["error"]["error"] == "bad_request"
        ok = msgpack.packb({"v": 1, "id": 5, "op": "health"})
        writer.write(struct.pack(">I", len(ok)) + ok)
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        assert msgpack.unpackb(await reader.readexactly(length))["body"]["status"] == "ok"
    finally:
        writer.close()


def test_check_config_proves_keys_match_certificates(ca_config: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [BIN / "ca-signer", "--config", ca_config, "--check-config"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "test signatures verified" in ok.stdout
    # point issuing-1 at the root certificate: the token key no longer matches
    manifest = manifest_path(load(ca_config))
    original = manifest.read_text()
    try:
        manifest.write_text(
            original.replace('certificate = "issuing-1.pem"', 'certificate = "root-1.pem"')
        )
        bad = subprocess.run(
            [BIN / "ca-signer", "--config", ca_config, "--check-config"],
            capture_output=True,
            text=True,
        )
    finally:
        manifest.write_text(original)
    assert bad.returncode != 0
    assert "does not match" in bad.stderr
