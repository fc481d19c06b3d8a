"""Signer pieces that need no token: wire contract, profiles, templates, import seams."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from signer.codec import Frame, decode_item, encode, wire_form
from signer.errors import ErrorKind, SignerError
from signer.issuance.issuer import preencode
from signer.protocol import CrlItem, CrlRequest, IssueRequest, OcspRequest, RevokedEntry

REPO = Path(__file__).resolve().parents[2]


def test_requests_round_trip_through_the_wire() -> None:
    req = IssueRequest(b"spki", (("2.5.4.3", "x"),), "signing", (1 << 100) + 5, 10, 20, None)
    assert decode_item("issue", encode(req)) == req
    crl = CrlRequest("issuing-1", 3, 1, 2, (RevokedEntry(1 << 70, 5, "keyCompromise"),))
    assert decode_item("crl", encode(CrlItem.of(crl))).request() == crl  # type: ignore[union-attr]
    o = OcspRequest("issuing-1", 1 << 80, "revoked", 1, 2, 1, "superseded", b"n")
    assert decode_item("ocsp", encode(o)) == o


@pytest.mark.parametrize(
    "mutate, kind",
    [
        (lambda d: d.pop("spki"), ErrorKind.BAD_REQUEST),
        (lambda d: d.update(serial="0abc"), ErrorKind.BAD_REQUEST),
        (lambda d: d.update(serial="ABC"), ErrorKind.BAD_REQUEST),
        (lambda d: d.update(not_before="soon"), ErrorKind.BAD_REQUEST),
        (lambda d: d.update(not_before=True), ErrorKind.BAD_REQUEST),
        (lambda d: d.update(subject=[["2.5.4.3"]]), ErrorKind.BAD_REQUEST),
        (lambda d: d.update(basic_constraints={"ca": True}), ErrorKind.PROFILE_VIOLATION),
    ],
)
def test_malformed_issue_items_are_refused_with_a_kind(mutate, kind) -> None:  # type: ignore[no-untyped-def]
    wire = wire_form(IssueRequest(b"spki", (("2.5.4.3", "x"),), "signing", 1 << 100, 10, 20))
    mutate(wire)
    with pytest.raises(SignerError) as err:
        decode_item("issue", encode(wire))
    assert err.value.kind is kind


def test_frames_refuse_other_versions_and_garbage() -> None:
    good = Frame(id=3, op="health").encode()[4:]
    assert Frame.decode(good).op == "health"
    import msgpack

    for payload in (
        b"\xc1",
        msgpack.packb({"v": 2, "id": 1}),
        msgpack.packb({"v": 1, "id": "x"}),
        msgpack.packb({"v": 1, "id": 1, "op": "ocsp", "items": [], "priority": "urgent"}),
    ):
        with pytest.raises(SignerError) as err:
            Frame.decode(payload)
        assert err.value.kind is ErrorKind.BAD_REQUEST


def test_frames_carry_priority_and_default_to_interactive() -> None:
    bulk = Frame(id=1, op="ocsp", items=[], priority="bulk").encode()[4:]
    plain = Frame(id=2, op="issue", items=[]).encode()[4:]
    assert Frame.decode(bulk).priority == "bulk"
    assert Frame.decode(plain).priority == "interactive"


def test_builder_times_and_names_match_the_straightforward_forms() -> None:
    from signer.issuance.build import _naive, _name

    for ts in (0, 1_700_000_000, 2**31 + 5, 4_102_444_800):
        assert _naive(ts) == dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None)
    pairs = (("2.5.4.6", "TW"), ("2.5.4.10", "Example Co"), ("2.5.4.3", "A123456789"))
    plain = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(x509.ObjectIdentifier(o), v)])
            for o, v in pairs
        ]
    )
    assert _name(pairs) == _name(pairs) == plain
    assert _name(pairs).public_bytes() == plain.public_bytes()


def test_preencoded_template_gives_identical_der() -> None:
    """The fast path must not change a single byte of what is signed."""
    ca = ec.generate_private_key(ec.SECP256R1())
    subject_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "CA")])
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), False),
        (
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier("1.2.3"), None)]
            ),
            False,
        ),
    ]
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def typed() -> bytes:
        builder = x509.CertificateBuilder().issuer_name(name).subject_name(name)
        for value, critical in exts:
            builder = builder.add_extension(value, critical=critical)
        return (
            builder.public_key(subject_key)
            .serial_number(1 << 70)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(ca, hashes.SHA256())
            .tbs_certificate_bytes
        )

    def fast() -> bytes:
        # the signer's path: one constructor call, extension values encoded once
        return (
            x509.CertificateBuilder(
                issuer_name=name,
                subject_name=name,
                public_key=subject_key,
                serial_number=1 << 70,
                not_valid_before=now.replace(tzinfo=None),
                not_valid_after=(now + dt.timedelta(days=1)).replace(tzinfo=None),
                extensions=preencode(exts),
            )
            .sign(ca, hashes.SHA256())
            .tbs_certificate_bytes
        )

    assert fast() == typed()


def test_gateway_side_of_the_seam_never_loads_pkcs11() -> None:
    code = (
        "import sys, signer.client, signer.protocol, signer.errors, config.loader, "
        "config.token, config.manifest, config.identities, signer.role_keys; "
        "assert 'pkcs11' not in sys.modules, 'pkcs11 leaked'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_only_the_adapters_import_pkcs11() -> None:
    offenders = []
    for path in REPO.glob("*/**/*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in {".venv", "tests", "bench"} or rel.parts[:2] == ("signer", "hsm"):
            continue
        if rel.parts[0] == "hsm_config":
            continue
        text = path.read_text(encoding="utf-8")
        if "import pkcs11" in text or "from pkcs11" in text:
            offenders.append(str(rel))
    assert offenders == []


def _software_token(kind: str, signing_key: object, garbage: bool = False):  # type: ignore[no-untyped-def]
    """A stand-in for C_Sign (unit level, no PKCS#11): the raw signature over what the token
    receives, made with ``signing_key``, which may be another key than the CA's."""
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    def raw_sign(data: bytes, mechanism: object) -> bytes:
        if garbage:
            return bytes(range(256))[: 256 if kind == "rsa" else 64]
        if kind == "rsa":  # DigestInfo(SHA-256) is 19 bytes, then the digest
            return signing_key.sign(
                data[19:],
                padding.PKCS1v15(),  # type: ignore[attr-defined]
                utils.Prehashed(hashes.SHA256()),
            )
        der = signing_key.sign(data, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[attr-defined]
        r, s = utils.decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return raw_sign


def _unit_ca(kind: str, token: str):  # type: ignore[no-untyped-def]
    """A CA certificate, and a registry whose issuer key signs through ``_software_token``."""
    import time

    from cryptography.hazmat.primitives.asymmetric import rsa

    from signer.hsm.keys import wrap
    from signer.issuance import build
    from signer.issuance.issuer import Issuer
    from signer.issuance.profile import Profile
    from signer.issuance.responder import Responder, Responders, ResponderSlot

    def new_key():  # type: ignore[no-untyped-def]
        return (
            rsa.generate_private_key(65537, 2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )

    ca, other = new_key(), new_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Unit CA")])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .issuer_name(name)
        .subject_name(name)
        .public_key(ca.public_key())
        .serial_number(1 << 70)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca, hashes.SHA256())
    )
    raw_sign = _software_token(
        kind, ca if token == "right key" else other, garbage=token == "garbage"
    )
    issuer = Issuer(
        name="unit",
        role="issuing",
        active=True,
        certificate=ca_cert,
        key=wrap(ca.public_key(), raw_sign, "unit-key"),  # type: ignore[arg-type]
        public_url="http://ca.invalid",
    )
    profile = Profile(
        name="signing", usage="signing", max_validity_seconds=400 * 86400, policy_oids=()
    )
    # the issuer's OCSP responder: its certificate signed by the CA in software, its key
    # signing through the same stand-in token (so a broken token breaks its answers too)
    responder_key, responder_other = new_key(), new_key()
    responder_cert = (
        x509.CertificateBuilder()
        .issuer_name(name)
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Unit OCSP")]))
        .public_key(responder_key.public_key())
        .serial_number(1 << 71)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=6))
        .sign(ca, hashes.SHA256())
    )
    responder_sign = _software_token(
        kind, responder_key if token == "right key" else responder_other, garbage=token == "garbage"
    )
    slot = ResponderSlot(
        issuer,
        wrap(
            responder_key.public_key(),
            responder_sign,  # type: ignore[arg-type]
            "unit-ocsp",
        ),
        Path("/nonexistent"),
        7,
    )
    slot.current = Responder(issuer, slot.key, responder_cert)
    return (
        ca,
        ca_cert,
        build.Registry(
            {"unit": issuer}, {"signing": profile}, time.time, Responders({"unit": slot})
        ),
    )


def _unit_requests(n: int) -> list[IssueRequest]:
    import time

    from cryptography.hazmat.primitives import serialization

    spki = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    t = int(time.time())
    return [
        IssueRequest(
            spki=spki,
            subject=(("2.5.4.3", f"S{i}"),),
            profile="signing",
            serial=(1 << 100) + i,
            not_before=t,
            not_after=t + 86400,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("token", ["right key", "wrong key", "garbage"])
def test_a_signature_that_does_not_verify_is_never_released(kind: str, token: str) -> None:
    import time

    from signer.issuance import build

    ca, ca_cert, registry = _unit_ca(kind, token)
    t = int(time.time())
    requests = _unit_requests(3)
    ocsp_request = OcspRequest(
        issuer="unit", serial=1 << 100, status="good", this_update=t, next_update=t + 3600
    )
    crl_request = CrlRequest(issuer="unit", crl_number=1, this_update=t, next_update=t + 3600)

    results = build.issue_batch(registry, requests)
    ocsp_results = build.sign_ocsp_batch(registry, [ocsp_request])
    if token == "right key":
        for der in results:
            assert isinstance(der, bytes)
            x509.load_der_x509_certificate(der).verify_directly_issued_by(ca_cert)
        assert isinstance(ocsp_results[0], bytes)
        assert x509.load_der_x509_crl(build.sign_crl(registry, crl_request)).is_signature_valid(
            ca.public_key()
        )  # type: ignore[arg-type]
        return
    for out in [*results, *ocsp_results]:
        assert isinstance(out, SignerError) and out.kind is ErrorKind.SIGNATURE_CHECK_FAILED
    with pytest.raises(SignerError) as err:
        build.sign_crl(registry, crl_request)
    assert err.value.kind is ErrorKind.SIGNATURE_CHECK_FAILED


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_the_release_check_binds_the_signature_to_the_bytes_released(kind: str) -> None:
    """A correct signature is not enough: the object must carry exactly the signature that was
    checked, and the DER handed out must contain exactly the bytes that were signed."""
    from signer.issuance import build, verify

    _, _, registry = _unit_ca(kind, "right key")
    first, second = (build.prepare_certificate(registry, r) for r in _unit_requests(2))
    cert, signed = build.sign_prepared(first)
    other_cert, other_signed = build.sign_prepared(second)
    issuer = registry.active
    der = cert.public_bytes(build.DER)
    assert build.release(first, (cert, signed)) == der
    changed = bytes([cert.signature[0] ^ 1]) + cert.signature[1:]
    for record, carried, released in (
        (other_signed, cert.signature, der),  # a valid signature, but over another certificate
        (signed, cert.signature, other_cert.public_bytes(build.DER)),  # other bytes released
        (signed, changed, der),  # the object carries another signature
    ):
        with pytest.raises(SignerError) as err:
            verify.released(issuer, record, carried, released)
        assert err.value.kind is ErrorKind.SIGNATURE_CHECK_FAILED
    with pytest.raises(RuntimeError):  # each record is taken once
        issuer.key.take_signed()


async def test_a_worker_that_sends_garbage_is_replaced_and_its_batch_failed() -> None:
    """The pool reads its workers on the event loop; an unreadable message must not leave the
    slot hanging: the worker is killed, its in-flight items fail as retryable."""
    import asyncio
    import socket

    from prometheus_client import CollectorRegistry

    from signer.codec import HEADER
    from signer.metrics import SignerMetrics
    from signer.pool import Job, Sent, WorkerPool, WorkerSlot

    class Process:
        killed = False

        def kill(self) -> None:
            self.killed = True

    pool = WorkerPool("unused.toml", 1, SignerMetrics(CollectorRegistry()))
    pool._closing = True  # no replacement process in a unit test
    slot = WorkerSlot(0, process=Process(), state="ready", generation=1)
    job = Job("issue", [{}], None, asyncio.get_running_loop().create_future())
    slot.inflight[7] = Sent(7, [(job, 0)], 0.0)
    ours, theirs = socket.socketpair()
    theirs.sendall(HEADER.pack(3) + b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    await asyncio.wait_for(pool._read_worker(slot, ours, 1), 5)
    theirs.close()
    assert slot.process.killed and slot.state == "dead" and not slot.inflight
    assert (await job.future)[0].error == ErrorKind.WORKER_FAILED.value


def test_the_shared_revocation_vocabulary_is_rfc_5280s() -> None:
    """Reason names are cryptography's ReasonFlags values (build.py turns one into the other
    directly), every name has its CRLReason code, and a request states only some of them."""
    from signer.vocabulary import REASON_CODES, REQUESTED_REASONS, REVOCATION_REASONS

    assert set(REVOCATION_REASONS) == {flag.value for flag in x509.ReasonFlags}
    assert set(REASON_CODES) == set(REVOCATION_REASONS)
    assert sorted(REASON_CODES.values()) == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert set(REQUESTED_REASONS) < set(REVOCATION_REASONS)
    assert "cACompromise" not in REQUESTED_REASONS
