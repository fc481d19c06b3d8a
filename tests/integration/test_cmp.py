"""CMP enrolment with Debian's ``openssl cmp`` as the client, against the real gateway, signer
daemon (SoftHSM) and PostgreSQL: ``ir`` and ``p10cr`` with the one-time enrolment secret,
``certConf``/``pkiConf``, and the refusals (each a CMP error ``openssl cmp`` reports, with
nothing issued)."""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc9480

from tests.integration import lifecycle
from tests.integration.conftest import register, subscriber_body
from tests.integration.lifecycle import new_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process
gateway_config = lifecycle.gateway_config
PEM = serialization.Encoding.PEM
# certificates valid 20 days, renewal window 30 days: every new certificate may be renewed
GATEWAY_OVERRIDES = {"certificate_validity_days": 20, "renewal_window_days": 30}


async def openssl_cmp(*args: str | Path, secret: str | None = None) -> tuple[int, str]:
    """``openssl cmp`` with the secret in its environment (never on the command line)."""
    env = dict(os.environ)
    extra: list[str] = []
    if secret is not None:
        env["CMP_SECRET"] = secret
        extra = ["-secret", "env:CMP_SECRET"]
    proc = await asyncio.create_subprocess_exec(
        "openssl",
        "cmp",
        *[str(a) for a in args],
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def write_key(path: Path, kind: str = "rsa") -> Any:
    key = new_key(kind)
    path.write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key


async def cmp_secret(officer: Any, subscriber_id: int) -> dict[str, Any]:
    r = await officer.call("POST", f"/api/v1/ra/subscribers/{subscriber_id}/cmp-secret")
    assert r.status == 201, r.text
    return r.json


def server_args(base_url: str, profile: str | None) -> list[str]:
    host = base_url.removeprefix("http://")
    path = ".well-known/cmp" + (f"/p/{profile}" if profile else "")
    return ["-server", host, "-path", path]


@pytest.fixture(autouse=True)
def real_time(clock: Any) -> None:
    """openssl stamps messageTime with the real time: the gateway's clock follows it."""
    clock.now = datetime.now(UTC).replace(microsecond=0)


async def enrol(
    base_url: str,
    tmp: Path,
    reference: str,
    secret: str,
    *,
    cmd: str = "ir",
    profile: str | None = "signing",
    kind: str = "rsa",
    name: str = "c",
) -> tuple[int, str, Path]:
    """One ``openssl cmp`` enrolment (ir with -newkey, or p10cr with a CSR)."""
    key = tmp / f"{name}.key"
    write_key(key, kind)
    cert = tmp / f"{name}.pem"
    args: list[str | Path] = [
        "-cmd",
        cmd,
        *server_args(base_url, profile),
        "-ref",
        reference,
        "-certout",
        cert,
        "-unprotected_errors",
    ]
    if cmd == "p10cr":
        csr = tmp / f"{name}.csr"
        await lifecycle.run(
            "openssl", "req", "-new", "-key", key, "-subj", "/CN=ignored", "-out", csr
        )
        args += ["-csr", csr]
    else:
        args += ["-newkey", key, "-subject", "/CN=ignored"]
    rc, out = await openssl_cmp(*args, secret=secret)
    return rc, out, cert


async def certificates_of(officer: Any, subscriber_id: int) -> list[dict[str, Any]]:
    r = await officer.call("GET", f"/api/v1/ra/subscribers/{subscriber_id}")
    assert r.status == 200, r.text
    return r.json["certificates"]


async def chain_file(base_url: str, officer: Any, tmp: Path) -> Path:
    r = await officer.call("GET", "/ca/chain.pem")
    assert r.status == 200
    path = tmp / "chain.pem"
    path.write_bytes(r.body)
    return path


async def test_ir_signing_and_p10cr_encryption(base_url: str, officer: Any, tmp_path: Path) -> None:
    body = subscriber_body()
    slip = await register(officer, subject=body["subject"])
    sid = slip["subscriber_id"]
    chain = await chain_file(base_url, officer, tmp_path)

    first = await cmp_secret(officer, sid)
    assert first["reference"] == slip["account"] and first["secret"] != slip["initial_password"]
    rc, out, cert = await enrol(base_url, tmp_path, first["reference"], first["secret"])
    assert rc == 0, out
    assert "received PKICONF" in out
    # the same secret does not work a second time (nor for the other usage)
    rc, out, _ = await enrol(
        base_url, tmp_path, first["reference"], first["secret"], profile="encryption", name="again"
    )
    assert rc != 0 and "badMessageCheck" in out, out

    second = await cmp_secret(officer, sid)
    rc, out, cert2 = await enrol(
        base_url,
        tmp_path,
        second["reference"],
        second["secret"],
        cmd="p10cr",
        profile="encryption",
        kind="p256",
        name="enc",
    )
    assert rc == 0, out

    for path in (cert, cert2):
        rc, out = await lifecycle.run("openssl", "verify", "-CAfile", chain, path)
        assert rc == 0 and ": OK" in out, out
        issued = x509.load_pem_x509_certificate(path.read_bytes())
        assert (
            issued.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
            == body["subject"]["cn"]
        )  # the registration decides the subject, not the request
    rows = await certificates_of(officer, sid)
    assert sorted(r["usage"] for r in rows) == ["encryption", "signing"]
    r = await officer.call("GET", "/api/v1/ra/audit?after_id=0&limit=1000")
    events = [
        e
        for e in r.json["events"]
        if e["action"] == "certificate_issued" and e["details"].get("protocol") == "cmp"
    ]
    assert {e["details"]["usage"] for e in events} >= {"signing", "encryption"}


async def test_refusals_issue_nothing(
    base_url: str, officer: Any, tmp_path: Path, clock: Any
) -> None:
    slip = await register(officer)
    sid = slip["subscriber_id"]
    issued = await cmp_secret(officer, sid)
    # a wrong secret, an unknown reference: badMessageCheck, the same for both
    rc, out, _ = await enrol(base_url, tmp_path, issued["reference"], "WRONG-SECRET-0000")
    assert rc != 0 and "PKIFailureInfo: badMessageCheck" in out, out
    rc, out, _ = await enrol(base_url, tmp_path, "no-such-account", issued["secret"])
    assert rc != 0 and "PKIFailureInfo: badMessageCheck" in out, out
    # an unknown profile
    rc, out, _ = await enrol(
        base_url, tmp_path, issued["reference"], issued["secret"], profile="server"
    )
    assert rc != 0 and "PKIFailureInfo: badRequest" in out, out
    # messageTime too far from the server's clock
    clock.advance(3600)
    rc, out, _ = await enrol(base_url, tmp_path, issued["reference"], issued["secret"])
    assert rc != 0 and "PKIFailureInfo: badTime" in out, out
    clock.now = datetime.now(UTC)
    # a tampered message: a valid request with one byte of its template changed
    ir = tmp_path / "ir.der"
    write_key(tmp_path / "t.key")
    rc, out = await openssl_cmp(
        "-cmd",
        "ir",
        "-server",
        "127.0.0.1:1",
        "-path",
        "x",
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "t.key",
        "-subject",
        "/CN=tamper",
        "-certout",
        tmp_path / "t.pem",
        "-reqout",
        ir,
        secret=issued["secret"],
    )
    der = bytearray(ir.read_bytes())
    at = der.index(b"tamper")
    der[at] ^= 0x01
    bad = tmp_path / "bad.der"
    bad.write_bytes(bytes(der))
    rc, out = await openssl_cmp(
        "-cmd",
        "ir",
        *server_args(base_url, "signing"),
        "-reqin",
        bad,
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "t.key",
        "-certout",
        tmp_path / "t.pem",
        "-disable_confirm",
        "-unprotected_errors",
        secret=issued["secret"],
    )
    assert rc != 0 and "PKIFailureInfo: badMessageCheck" in out, out
    assert await certificates_of(officer, sid) == []
    # the secret still works after all that, once
    rc, out, _ = await enrol(base_url, tmp_path, issued["reference"], issued["secret"])
    assert rc == 0, out
    assert len(await certificates_of(officer, sid)) == 1


async def test_replayed_transaction(base_url: str, officer: Any, tmp_path: Path) -> None:
    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    ir = tmp_path / "ir.der"
    write_key(tmp_path / "r.key")
    common = [
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "r.key",
        "-certout",
        tmp_path / "r.pem",
        "-disable_confirm",
    ]
    rc, out = await openssl_cmp(
        "-cmd",
        "ir",
        "-server",
        "127.0.0.1:1",
        "-path",
        "x",
        "-subject",
        "/CN=x",
        "-reqout",
        ir,
        *common,
        secret=issued["secret"],
    )
    assert ir.exists(), out
    sent = [
        "-cmd",
        "ir",
        *server_args(base_url, "signing"),
        "-reqin",
        ir,
        *common,
        "-unprotected_errors",
    ]
    rc, out = await openssl_cmp(*sent, secret=issued["secret"])
    assert rc == 0, out
    rc, out = await openssl_cmp(*sent, secret=issued["secret"])
    assert rc != 0 and "PKIFailureInfo: transactionIdInUse" in out, out
    assert len(await certificates_of(officer, slip["subscriber_id"])) == 1


async def test_fuzzed_messages_never_5xx(base_url: str, officer: Any, tmp_path: Path) -> None:
    """Bounded: 300 mutations of a valid ir (bytes flipped, cut, inserted; seeded); every
    answer is a CMP message with HTTP 200, and the server still enrols afterwards."""
    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    ir = tmp_path / "ir.der"
    write_key(tmp_path / "f.key")
    await openssl_cmp(
        "-cmd",
        "ir",
        "-server",
        "127.0.0.1:1",
        "-path",
        "x",
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "f.key",
        "-subject",
        "/CN=f",
        "-certout",
        tmp_path / "f.pem",
        "-reqout",
        ir,
        secret=issued["secret"],
    )
    valid = ir.read_bytes()
    rng = random.Random(17)
    async with aiohttp.ClientSession() as http:
        for i in range(300):
            der = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                pos = rng.randrange(len(der))
                if op < 0.6:
                    der[pos] = rng.randrange(256)
                elif op < 0.8:
                    del der[pos : pos + rng.randint(1, 16)]
                else:
                    der[pos:pos] = rng.randbytes(rng.randint(1, 8))
            path = "/.well-known/cmp" if i % 2 else "/.well-known/cmp/p/encryption"
            async with http.post(
                base_url + path, data=bytes(der), headers={"Content-Type": "application/pkixcmp"}
            ) as r:
                body = await r.read()
                assert r.status == 200, (i, r.status)
                assert r.content_type == "application/pkixcmp"
            answer, rest = decoder.decode(body, asn1Spec=rfc9480.PKIMessage())
            assert not rest and answer["body"].getName() in ("error", "ip", "pkiconf")
        async with http.post(
            base_url + "/.well-known/cmp", data=b"", headers={"Content-Type": "text/plain"}
        ) as r:
            assert r.status == 200
    # the server still enrols (another subscriber: a mutation that only re-encodes the same
    # message, e.g. a long-form length, is that message and may have used the secret)
    other = await register(officer)
    fresh = await cmp_secret(officer, other["subscriber_id"])
    rc, out, _ = await enrol(base_url, tmp_path, fresh["reference"], fresh["secret"])
    assert rc == 0, out


async def _enrolled(
    base_url: str, officer: Any, tmp: Path, name: str, kind: str = "rsa"
) -> tuple[dict[str, Any], Path, Path]:
    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    rc, out, cert = await enrol(
        base_url, tmp, issued["reference"], issued["secret"], kind=kind, name=name
    )
    assert rc == 0, out
    return slip, cert, tmp / f"{name}.key"


async def kur(
    base_url: str, chain: Path, cert: Path, key: Path, new_key: Path, out_cert: Path
) -> tuple[int, str]:
    return await openssl_cmp(
        "-cmd",
        "kur",
        *server_args(base_url, None),
        "-cert",
        cert,
        "-key",
        key,
        "-newkey",
        new_key,
        "-certout",
        out_cert,
        "-trusted",
        chain,
        "-unprotected_errors",
    )


async def test_kur_renews_and_supersedes(base_url: str, officer: Any, tmp_path: Path) -> None:
    chain = await chain_file(base_url, officer, tmp_path)
    slip, old_cert, old_key = await _enrolled(base_url, officer, tmp_path, "old", "p256")
    write_key(tmp_path / "new.key", "p256")
    rc, out = await kur(
        base_url, chain, old_cert, old_key, tmp_path / "new.key", tmp_path / "new.pem"
    )
    assert rc == 0, out
    assert "received KUP" in out and "received PKICONF" in out
    rc, out = await lifecycle.run("openssl", "verify", "-CAfile", chain, tmp_path / "new.pem")
    assert rc == 0, out
    old = x509.load_pem_x509_certificate(old_cert.read_bytes())
    new = x509.load_pem_x509_certificate((tmp_path / "new.pem").read_bytes())
    assert new.subject == old.subject and new.serial_number != old.serial_number
    rows = {r["serial"]: r for r in await certificates_of(officer, slip["subscriber_id"])}
    assert rows[format(old.serial_number, "x")]["status"] == "superseded"
    assert rows[format(new.serial_number, "x")]["status"] == "issued"
    r = await officer.call("GET", "/api/v1/ra/audit?after_id=0&limit=1000")
    assert any(
        e["action"] == "certificate_renewed"
        and e["details"].get("protocol") == "cmp"
        and e["target"] == format(new.serial_number, "x")
        for e in r.json["events"]
    )
    # the superseded certificate cannot renew again
    write_key(tmp_path / "third.key", "p256")
    rc, out = await kur(
        base_url, chain, old_cert, old_key, tmp_path / "third.key", tmp_path / "third.pem"
    )
    assert rc != 0 and "PKIFailureInfo: notAuthorized" in out, out


async def test_kur_refusals(base_url: str, officer: Any, tmp_path: Path) -> None:
    chain = await chain_file(base_url, officer, tmp_path)
    slip, cert, key = await _enrolled(base_url, officer, tmp_path, "k")
    # the same key again
    rc, out = await kur(base_url, chain, cert, key, key, tmp_path / "same.pem")
    assert rc != 0 and "PKIFailureInfo: badCertTemplate" in out, out
    # a revoked certificate
    serial = format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")
    r = await officer.call(
        "POST", f"/api/v1/ra/certificates/{serial}/revocation", {"reason": "keyCompromise"}
    )
    assert r.status == 200, r.text
    write_key(tmp_path / "n.key")
    rc, out = await kur(base_url, chain, cert, key, tmp_path / "n.key", tmp_path / "n.pem")
    assert rc != 0 and "PKIFailureInfo: certRevoked" in out, out
    assert len(await certificates_of(officer, slip["subscriber_id"])) == 1


async def test_rr_then_ocsp_says_revoked(base_url: str, officer: Any, tmp_path: Path) -> None:
    chain = await chain_file(base_url, officer, tmp_path)
    slip, cert, key = await _enrolled(base_url, officer, tmp_path, "rv")
    rc, out = await openssl_cmp(
        "-cmd",
        "rr",
        *server_args(base_url, None),
        "-cert",
        cert,
        "-key",
        key,
        "-oldcert",
        cert,
        "-revreason",
        "1",
        "-trusted",
        chain,
        "-unprotected_errors",
    )
    assert rc == 0, out
    assert "received RP" in out
    issuing = tmp_path / "issuing.pem"
    issuing.write_bytes(x509.load_pem_x509_certificates(chain.read_bytes())[0].public_bytes(PEM))
    rc, out = await lifecycle.run(
        "openssl",
        "ocsp",
        "-issuer",
        issuing,
        "-cert",
        cert,
        "-url",
        base_url + "/ocsp",
        "-CAfile",
        chain,
    )
    assert ": revoked" in out and "Reason: keyCompromise" in out, out
    row = (await certificates_of(officer, slip["subscriber_id"]))[0]
    assert row["status"] == "revoked"
    # again: certRevoked
    rc, out = await openssl_cmp(
        "-cmd",
        "rr",
        *server_args(base_url, None),
        "-cert",
        cert,
        "-key",
        key,
        "-oldcert",
        cert,
        "-revreason",
        "1",
        "-trusted",
        chain,
        "-unprotected_errors",
    )
    assert rc != 0 and "PKIFailureInfo: certRevoked" in out, out


async def test_implicit_confirm_and_genm(base_url: str, officer: Any, tmp_path: Path) -> None:
    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    rc, out = await openssl_cmp(
        "-cmd",
        "genm",
        *server_args(base_url, None),
        "-ref",
        issued["reference"],
        "-infotype",
        "signKeyPairTypes",
        "-unprotected_errors",
        secret=issued["secret"],
    )
    assert rc == 0 and "received GENP" in out, out
    assert "signKeyPairTypes" in out, out
    write_key(tmp_path / "i.key")
    rc, out = await openssl_cmp(
        "-cmd",
        "ir",
        *server_args(base_url, "signing"),
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "i.key",
        "-subject",
        "/CN=x",
        "-certout",
        tmp_path / "i.pem",
        "-implicit_confirm",
        "-unprotected_errors",
        secret=issued["secret"],
    )
    assert rc == 0, out
    assert "received IP" in out and "CERTCONF" not in out, out


async def test_cmp_key_signs_only_answers_naming_it(signer: Any) -> None:
    """The signer's ``cmp`` operation: the CMP key signs a DER ProtectedPart of an answer sent
    by its certificate's subject with its key id, and refuses anything else."""
    from gateway.cmp import messages
    from gateway.cmp.signing import algorithm
    from signer.errors import ErrorKind, SignerError
    from signer.protocol import CmpRequest

    der = await signer.cmp(CmpRequest(None))
    cert = x509.load_der_x509_certificate(der)
    assert (
        x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    now = datetime.now(UTC)

    def part(kind: str, sender: x509.Name = cert.subject, kid: bytes = ski) -> bytes:
        header = messages.response_header(
            None, sender=sender, protection_alg=algorithm(cert), sender_kid=kid, now=now
        )
        value = None if kind == "pkiconf" else rfc9480.GenMsgContent()
        return messages.protected_part(header, messages.body_of(kind, value))

    good = part("pkiconf")
    signature = await signer.cmp(CmpRequest(good))
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    cert.public_key().verify(signature, good, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    other = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Someone Else")])
    for bad in (
        part("genm"),
        part("pkiconf", sender=other),
        part("pkiconf", kid=b"x" * 20),
        good + b"\x00",
        b"ca-audit-checkpoint/v1\x00 anything",
    ):
        with pytest.raises(SignerError) as err:
            await signer.cmp(CmpRequest(bad))
        assert err.value.kind is ErrorKind.BAD_REQUEST


async def test_bad_pop_is_refused(base_url: str, officer: Any, tmp_path: Path) -> None:
    """An ir whose proof-of-possession signature is broken but whose MAC is right (re-protected
    with the secret after the change): badPOP, nothing issued, the secret still usable."""
    from gateway.cmp import messages, protection

    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    ir = tmp_path / "ir.der"
    write_key(tmp_path / "p.key")
    await openssl_cmp(
        "-cmd",
        "ir",
        "-server",
        "127.0.0.1:1",
        "-path",
        "x",
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "p.key",
        "-subject",
        "/CN=p",
        "-certout",
        tmp_path / "p.pem",
        "-reqout",
        ir,
        secret=issued["secret"],
    )
    msg, _ = decoder.decode(ir.read_bytes(), asn1Spec=rfc9480.PKIMessage())
    pop = msg["body"]["ir"][0]["popo"]["signature"]
    sig = bytearray(pop["signature"].asOctets())
    sig[10] ^= 0xFF
    pop["signature"] = univ.BitString.fromOctetString(bytes(sig))
    params = protection.PbmParams.of(msg["header"]["protectionAlg"])
    mac = params.mac_of(
        issued["secret"].encode(), messages.protected_part(msg["header"], msg["body"])
    )
    messages.put(msg, "protection", rfc9480.PKIProtection.fromOctetString(mac))
    from pyasn1.codec.der import encoder

    bad = tmp_path / "badpop.der"
    bad.write_bytes(encoder.encode(msg))
    rc, out = await openssl_cmp(
        "-cmd",
        "ir",
        *server_args(base_url, "signing"),
        "-reqin",
        bad,
        "-ref",
        issued["reference"],
        "-newkey",
        tmp_path / "p.key",
        "-certout",
        tmp_path / "p.pem",
        "-disable_confirm",
        "-unprotected_errors",
        secret=issued["secret"],
    )
    assert rc != 0 and "PKIFailureInfo: badPOP" in out, out
    assert await certificates_of(officer, slip["subscriber_id"]) == []
    rc, out, _ = await enrol(base_url, tmp_path, issued["reference"], issued["secret"])
    assert rc == 0, out


async def test_one_valid_certificate_per_usage(base_url: str, officer: Any, tmp_path: Path) -> None:
    """The pipeline's rule holds for CMP: a second signing certificate is refused (badRequest)
    and the refusal gives the secret back, which then enrols the other usage."""
    slip = await register(officer)
    first = await cmp_secret(officer, slip["subscriber_id"])
    rc, out, _ = await enrol(base_url, tmp_path, first["reference"], first["secret"], name="a")
    assert rc == 0, out
    second = await cmp_secret(officer, slip["subscriber_id"])
    rc, out, _ = await enrol(base_url, tmp_path, second["reference"], second["secret"], name="b")
    assert rc != 0 and "PKIFailureInfo: badRequest" in out and "already hold" in out, out
    assert len(await certificates_of(officer, slip["subscriber_id"])) == 1
    rc, out, _ = await enrol(
        base_url, tmp_path, second["reference"], second["secret"], profile="encryption", name="c"
    )
    assert rc == 0, out
    assert sorted(r["usage"] for r in await certificates_of(officer, slip["subscriber_id"])) == [
        "encryption",
        "signing",
    ]
