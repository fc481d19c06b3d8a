"""Nothing dies of one request: a poisoned item fails alone, the worker and its batch go on.

The real ``ca-signer`` daemon with one worker on a real SoftHSM token (P-256): each batch of 64
items carries one item that cryptography cannot build, or that the signer's own checks must
refuse, in the middle. The batch must come back with 63 signed objects, one typed refusal
(counted in ``ca_signer_errors_total{kind}``) and no worker restart. With one worker all 64
items travel in one batch, so a worker that died of the poisoned item would fail all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from msgspec.structs import replace

from config.loader import load
from signer.client import Address, Connection, SignerClient
from signer.codec import Frame
from signer.config import load_signer_config
from signer.errors import ErrorKind
from signer.protocol import (
    CrlItem,
    CrlRequest,
    IssueRequest,
    OcspRequest,
    Result,
    RevokedEntry,
)
from tests.support.signer_proc import running_signer, socket_of

BATCH = 64
POISON_AT = 37  # somewhere in the middle: items before and after it must both come back


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Signer:
    config: Path
    address: str
    metrics_port: int
    issuing: x509.Certificate
    spki: bytes


@pytest.fixture(scope="module")
def signer(ca_config_ec: Path) -> Iterator[Signer]:
    """One daemon with ONE worker for the module: every request below is a single batch."""
    port = free_port()
    scfg = load_signer_config(load(ca_config_ec, environ={}))
    issuing = next(i.certificate for i in scfg.issuers.values() if i.active)
    spki = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    env = {"CA_SIGNER_METRICS_PORT": str(port), "CA_SIGNER_METRICS_HOST": "127.0.0.1"}
    with running_signer(ca_config_ec, workers=1, env=env):
        yield Signer(ca_config_ec, f"unix:{socket_of(ca_config_ec)}", port, issuing, spki)


@contextlib.asynccontextmanager
async def client_of(signer: Signer) -> AsyncIterator[SignerClient]:
    client = SignerClient([signer.address], timeout=30)
    try:
        yield client
    finally:
        await client.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def errors_of(metrics: dict[str, float], kind: str) -> float:
    return metrics.get(f'ca_signer_errors_total{{kind="{kind}"}}', 0.0)


async def health(signer: Signer) -> dict[str, Any]:
    conn = Connection(Address.parse(signer.address), None)
    try:
        frame = await conn.call(Frame(id=0, op="health"), 5.0)
        assert frame.body is not None
        return frame.body
    finally:
        await conn.close()


def issue_request(spki: bytes, **kw: Any) -> IssueRequest:
    now = int(time.time())
    base = IssueRequest(
        spki=spki,
        subject=(("2.5.4.6", "TW"), ("2.5.4.3", f"isolation {secrets.token_hex(4)}")),
        profile="signing",
        serial=secrets.randbits(127) | (1 << 126),
        not_before=now - 60,
        not_after=now + 30 * 86400,
    )
    return replace(base, **kw)


def ocsp_request(**kw: Any) -> OcspRequest:
    now = int(time.time())
    base = OcspRequest("issuing-1", secrets.randbits(100) | 1 << 99, "good", now, now + 3600)
    return replace(base, **kw)


def _cn(value: str) -> tuple[tuple[str, str], ...]:
    return (("2.5.4.6", "TW"), ("2.5.4.3", value))


NOW = int(time.time())
# name -> (poisoned request built from a good one, the kind it must be refused with)
ISSUE_POISONS: dict[str, tuple[Callable[[IssueRequest], IssueRequest], ErrorKind]] = {
    # cryptography raises ValueError while building: this used to kill the worker
    "one-letter country": (
        lambda r: replace(r, subject=(("2.5.4.6", "T"), ("2.5.4.3", "x"))),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "country not in ISO 3166-1": (
        lambda r: replace(r, subject=(("2.5.4.6", "ZZ"), ("2.5.4.3", "x"))),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "lower-case country": (
        lambda r: replace(r, subject=(("2.5.4.6", "tw"), ("2.5.4.3", "x"))),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "DEL in a name": (lambda r: replace(r, subject=_cn("a\x7fb")), ErrorKind.PROFILE_VIOLATION),
    "C1 control in a name": (
        lambda r: replace(r, subject=_cn("a\x85b")),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "serialNumber outside PrintableString": (
        lambda r: replace(r, subject=(("2.5.4.6", "TW"), ("2.5.4.5", "A1234_é"))),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "email outside IA5String": (
        lambda r: replace(r, subject=(*_cn("x"), ("1.2.840.113549.1.9.1", "é@example.org"))),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "common name over 64": (
        lambda r: replace(r, subject=_cn("x" * 65)),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "not_before in year 146 billion": (
        lambda r: replace(r, not_before=2**62, not_after=2**62 + 60),
        ErrorKind.BAD_REQUEST,
    ),
    "not_after past 9999": (
        lambda r: replace(r, not_after=253402300800),
        ErrorKind.BAD_REQUEST,
    ),
    "not_before before 1950": (
        lambda r: replace(r, not_before=-(2**40)),
        ErrorKind.BAD_REQUEST,
    ),
    "not_after before not_before": (
        lambda r: replace(r, not_after=r.not_before - 1),
        ErrorKind.PROFILE_VIOLATION,
    ),
    "serial of 21 octets": (lambda r: replace(r, serial=2**159), ErrorKind.BAD_REQUEST),
    "unknown curve": (
        # secp256k1 parses, and is refused by the profile; SECT curves may not even load
        lambda r: replace(
            r,
            spki=ec.generate_private_key(ec.SECP256K1())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
        ErrorKind.WEAK_KEY,
    ),
}

OCSP_POISONS: dict[str, tuple[Callable[[OcspRequest], OcspRequest], ErrorKind]] = {
    # datetime.fromtimestamp raises OSError: this used to kill the worker
    "this_update of 2^62": (
        lambda r: replace(r, this_update=2**62, next_update=2**62 + 1),
        ErrorKind.BAD_REQUEST,
    ),
    "next_update of 2^62": (lambda r: replace(r, next_update=2**62), ErrorKind.BAD_REQUEST),
    "revoked at 2^62": (
        lambda r: replace(r, status="revoked", revoked_at=2**62),
        ErrorKind.BAD_REQUEST,
    ),
    "this_update before 1950": (
        lambda r: replace(r, this_update=-(2**40)),
        ErrorKind.BAD_REQUEST,
    ),
    "serial of 21 octets": (lambda r: replace(r, serial=2**159 + 1), ErrorKind.BAD_REQUEST),
}


async def restarts(signer: Signer) -> tuple[float, list[tuple[int, int]]]:
    """The restart counter and every worker's (pid, restarts), from metrics and health."""
    metrics = await asyncio.to_thread(scrape, signer.metrics_port)
    body = await health(signer)
    assert all(w["state"] == "ready" for w in body["workers"]), body
    workers = [(w["pid"], w["restarts"]) for w in body["workers"]]
    return metrics["ca_signer_worker_restarts_total"], workers


def _split(results: list[Result]) -> tuple[list[int], list[Result]]:
    bad = [i for i, r in enumerate(results) if r.error is not None]
    return bad, [results[i] for i in bad]


@pytest.mark.parametrize("case", sorted(ISSUE_POISONS))
async def test_a_poisoned_issue_item_fails_alone(signer: Signer, case: str) -> None:
    poison, kind = ISSUE_POISONS[case]
    reqs = [issue_request(signer.spki) for _ in range(BATCH)]
    reqs[POISON_AT] = poison(reqs[POISON_AT])
    before = await asyncio.to_thread(scrape, signer.metrics_port)
    restarts_before = await restarts(signer)
    async with client_of(signer) as client:
        results = await asyncio.wait_for(client.issue_many(reqs), 30)
    bad, errors = _split(results)
    assert bad == [POISON_AT], [(i, results[i].error) for i in bad[:5]]
    assert errors[0].error is not None and errors[0].error.kind is kind, errors[0].error
    assert not errors[0].error.retryable  # the client must not resend it to the next signer
    for i, (req, res) in enumerate(zip(reqs, results, strict=True)):
        if i != POISON_AT:
            cert = x509.load_der_x509_certificate(res.unwrap())
            assert cert.serial_number == req.serial
            cert.verify_directly_issued_by(signer.issuing)
    after = await asyncio.to_thread(scrape, signer.metrics_port)
    assert errors_of(after, kind.value) == errors_of(before, kind.value) + 1
    total, workers = await restarts(signer)
    assert total == 0 and workers == restarts_before[1], (total, workers, restarts_before)
    assert all(n == 0 for _, n in workers)


@pytest.mark.parametrize("case", sorted(OCSP_POISONS))
async def test_a_poisoned_ocsp_item_fails_alone(signer: Signer, case: str) -> None:
    poison, kind = OCSP_POISONS[case]
    reqs = [ocsp_request() for _ in range(BATCH)]
    reqs[POISON_AT] = poison(reqs[POISON_AT])
    before = await asyncio.to_thread(scrape, signer.metrics_port)
    async with client_of(signer) as client:
        results = await asyncio.wait_for(client.sign_ocsp(reqs), 30)
    bad, errors = _split(results)
    assert bad == [POISON_AT], [(i, results[i].error) for i in bad[:5]]
    assert errors[0].error is not None and errors[0].error.kind is kind, errors[0].error
    for i, (req, res) in enumerate(zip(reqs, results, strict=True)):
        if i != POISON_AT:
            response = ocsp.load_der_ocsp_response(res.unwrap())
            assert response.serial_number == req.serial
    after = await asyncio.to_thread(scrape, signer.metrics_port)
    assert errors_of(after, kind.value) == errors_of(before, kind.value) + 1
    total, workers = await restarts(signer)
    assert total == 0 and all(n == 0 for _, n in workers)


async def test_a_revoked_answer_at_the_epoch_is_signed(signer: Signer) -> None:
    """``revoked_at`` 0 is a time like any other (it used to read as "no time" and crash)."""
    async with client_of(signer) as client:
        (result,) = await client.sign_ocsp([ocsp_request(status="revoked", revoked_at=0)])
    response = ocsp.load_der_ocsp_response(result.unwrap())
    assert response.revocation_time_utc is not None
    assert int(response.revocation_time_utc.timestamp()) == 0


CRL_NUMBERS = itertools.count(7)


@pytest.mark.parametrize(
    ("case", "entries"),
    [
        ("revoked at 2^62", [RevokedEntry(12345, 2**62)]),
        ("serial of 21 octets", [RevokedEntry(2**159, NOW)]),
        ("the same serial twice", [RevokedEntry(12345, NOW), RevokedEntry(12345, NOW)]),
    ],
)
async def test_a_crl_with_a_bad_entry_is_refused_as_bad_request(
    signer: Signer, case: str, entries: list[RevokedEntry]
) -> None:
    now = int(time.time())
    # CRL numbers only ever increase (the signer keeps the last one): each case its own two
    number = next(CRL_NUMBERS)
    good = CrlRequest("issuing-1", number, now, now + 86400, (RevokedEntry(99, now - 60),))
    bad = replace(good, crl_number=number + 1, entries=tuple(entries))
    next(CRL_NUMBERS)
    async with client_of(signer) as client:
        results = await client._call("crl", [CrlItem.of(good), CrlItem.of(bad)], None)
    assert results[0].error is None, results[0].error
    x509.load_der_x509_crl(results[0].unwrap())
    assert results[1].error is not None and results[1].error.kind is ErrorKind.BAD_REQUEST, case
    total, workers = await restarts(signer)
    assert total == 0 and all(n == 0 for _, n in workers)
