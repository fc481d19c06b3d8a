"""OCSP cannot drive the token (real gateway, real signer daemon on SoftHSM, real PostgreSQL).

* what costs a signature and what does not: stored answers, the cache of ``unknown`` answers,
  the budget (``[gateway] ocsp_fresh_per_second``), ``unauthorized`` for the offline root, each
  counted on the signer's own metrics;
* under a flood of nonce and random-serial requests from 64 clients, 32 applicants get their
  certificates as fast as without it (p99 within 2x), nothing fails, and the signer makes no
  more OCSP signatures than the budget allows over the flood's duration (plus the burst);
* the gateway's CRL numbers against the signer's record of the last one it signed: a database
  whose counter went back (a fresh or restored one) is refused until the counter is raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
import math
import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from db.pool import connect
from gateway import appkeys, terms
from gateway.services import ocsp_presign
from gateway.services.ocsp_budget import TokenBucket
from gateway.services.ocsp_presign import OcspPresigner
from signer.errors import ErrorKind, SignerError
from tests.integration import lifecycle
from tests.support.ocsp_flood import cert_id_hashes
from tests.support.ocsp_flood import request as ocsp_request
from tests.support.signer_proc import running_signer

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config  # the defaults: 50 fresh signatures/s, burst 50
signer = lifecycle.signer
CA_KEY_TYPE = "p256"
REPO = Path(__file__).resolve().parents[2]

BASE_SECONDS = 10.0  # applicants alone
FLOOD_SECONDS = 20.0  # applicants while the flood runs
ROUNDS = 2  # baseline and flood alternate
ATTEMPTS = 2  # the latency comparison is measured again once before it fails
APPLICANTS = 32
FLOOD_CLIENTS = 64
APPLY_PAUSE = 0.5  # each applicant applies, waits this long, applies again
FLOOD_PAUSE = 0.1  # each flooding client sends its next request this long after an answer
RESPONDER = 'ca_signer_key_signatures_total{role="ocsp"}'


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def signer_metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def signer_process(ca_config: Path, signer_metrics_port: int) -> Iterator[Any]:
    env = {"CA_SIGNER_METRICS_PORT": str(signer_metrics_port)}
    with running_signer(ca_config, workers=1, env=env) as proc:
        yield proc


@pytest.fixture(scope="module", autouse=True)
def no_periodic_presign() -> Iterator[None]:
    """The test pre-signs when it wants to; the periodic job's signatures stay out of the
    signer's counts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ocsp_presign, "PRESIGN_START_DELAY_SECONDS", 3600.0)
        yield


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def signer_metrics(port: int) -> dict[str, float]:
    return await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")


async def seed_sessions(owner_url: str, n: int) -> list[tuple[str, str]]:
    """``n`` subscribers (both usages) with accounts and logged-in sessions, written directly
    (as ``bench/e2e.py`` does): the flood test is about issuance, not 3n Argon2 runs."""
    tag = secrets.token_hex(3).upper()
    now = datetime.now(UTC)
    conn = await connect(owner_url)
    try:
        first = await conn.fetchval("SELECT coalesce(max(id), 0) FROM subscribers")
        await conn.copy_records_to_table(
            "subscribers",
            records=[
                (
                    f"F{tag}{i:06d}",
                    "Flood Test",
                    f"f{tag.lower()}{i}@example.tw",
                    f"F{tag}{i:06d}-FLOOD",
                    ["Flood"],
                    "Example",
                    "TW",
                    ["signing", "encryption"],
                )
                for i in range(n)
            ],
            columns=[
                "id_number",
                "name",
                "email",
                "subject_cn",
                "subject_ou",
                "subject_o",
                "subject_c",
                "usages",
            ],
        )
        ids = [
            r[0]
            for r in await conn.fetch("SELECT id FROM subscribers WHERE id > $1 ORDER BY id", first)
        ]
        await conn.copy_records_to_table(
            "accounts",
            records=[(sid, f"f{tag.lower()}{sid:07d}", "$argon2id$unused", False) for sid in ids],
            columns=["subscriber_id", "account", "password_hash", "must_change_password"],
        )
        accounts = [
            r[0]
            for r in await conn.fetch(
                "SELECT id FROM accounts WHERE subscriber_id = ANY($1::bigint[]) ORDER BY id", ids
            )
        ]
        pairs = [(secrets.token_urlsafe(32), secrets.token_urlsafe(32)) for _ in accounts]
        await conn.copy_records_to_table(
            "sessions",
            records=[
                (
                    hashlib.sha256(tok.encode()).digest(),
                    "subscriber",
                    aid,
                    hashlib.sha256(csrf.encode()).digest(),
                    now,
                    now,
                )
                for (tok, csrf), aid in zip(pairs, accounts, strict=True)
            ],
            columns=["id_hash", "kind", "account_id", "csrf_hash", "created_at", "last_seen_at"],
        )
        return pairs
    finally:
        await conn.close()


def csr() -> str:
    return lifecycle.csr_pem(ec.generate_private_key(ec.SECP256R1()))


@dataclasses.dataclass(frozen=True)
class Slot:
    """One application a logged-in subscriber may make (one usage)."""

    token: str
    csrf: str
    usage: str


async def slots(owner_url: str, subscribers: int) -> list[Slot]:
    out = []
    for token, csrf in await seed_sessions(owner_url, subscribers):
        out += [Slot(token, csrf, "signing"), Slot(token, csrf, "encryption")]
    return out


async def apply_as(
    http: aiohttp.ClientSession, base_url: str, slot: Slot, pem: str
) -> tuple[int, Any]:
    """POST /api/v1/certificates with the slot's session cookie and CSRF token (one shared
    HTTP session for all applicants: no cookie jar or connector per subscriber)."""
    body = {"usage": slot.usage, "csr": pem, "terms_version": terms.VERSION}
    headers = {"Cookie": f"ca_session={slot.token}", "X-CSRF-Token": slot.csrf}
    async with http.post(f"{base_url}/api/v1/certificates", json=body, headers=headers) as r:
        return r.status, await r.json() if r.content_type == "application/json" else None


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def p99(values: list[float]) -> float:
    return quantile(values, 0.99)


def spread(values: list[float]) -> str:
    return "/".join(f"{quantile(values, q) * 1000:.0f}" for q in (0.5, 0.9, 0.99, 1.0)) + " ms"


async def applicants(
    base_url: str, seconds: float, work: list[Slot]
) -> tuple[list[float], list[str], list[str]]:
    """``APPLICANTS`` applicants apply one after another for ``seconds``; each application's
    latency, its certificate's serial, and every failure."""
    latencies: list[float] = []
    serials: list[str] = []
    errors: list[str] = []
    per = len(work) // APPLICANTS
    queues = [work[i * per : (i + 1) * per] for i in range(APPLICANTS)]
    csrs = [[csr() for _ in q] for q in queues]
    # the test process also holds pytest's heap: frozen, the collector's pauses are about the
    # gateway's own objects, as in its own process
    gc.collect()
    gc.freeze()
    end = time.monotonic() + seconds

    async def one(http: aiohttp.ClientSession, queue: list[Slot], pems: list[str]) -> None:
        await asyncio.sleep(secrets.randbelow(500) / 1000)  # not all at once
        for slot, pem in zip(queue, pems, strict=True):
            if time.monotonic() >= end:
                return
            t0 = time.perf_counter()
            status, body = await apply_as(http, base_url, slot, pem)
            latencies.append(time.perf_counter() - t0)
            if status != 201:
                errors.append(f"{status} {body}")
            else:
                serials.append(body["serial"])
            await asyncio.sleep(APPLY_PAUSE)

    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=APPLICANTS), cookie_jar=aiohttp.DummyCookieJar()
        ) as http:
            await asyncio.gather(*(one(http, q, p) for q, p in zip(queues, csrs, strict=True)))
    finally:
        gc.unfreeze()
    return latencies, serials, errors


def issuing(ca_config: Path) -> x509.Certificate:
    from config.loader import load
    from config.manifest import load_manifest, manifest_path

    entry = next(e for e in load_manifest(manifest_path(load(ca_config, environ={}))) if e.active)
    return entry.load_certificate()


def root(ca_config: Path) -> x509.Certificate:
    from config.loader import load
    from config.manifest import load_manifest, manifest_path

    entry = next(
        e for e in load_manifest(manifest_path(load(ca_config, environ={}))) if e.role == "root"
    )
    return entry.load_certificate()


async def ask(c: Any, der: bytes) -> ocsp.OCSPResponse:
    r = await c.call(
        "POST", "/ocsp", raw=der, csrf=False, headers={"Content-Type": "application/ocsp-request"}
    )
    assert r.status == 200
    return ocsp.load_der_ocsp_response(r.body)


def nonce_of(resp: ocsp.OCSPResponse) -> bytes | None:
    try:
        return resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


async def test_what_costs_a_signature(
    new_client: Any,
    owner_url: str,
    server: Any,
    db_pool: Any,
    signer: Any,
    clock: Any,
    ca_config: Path,
    signer_metrics_port: int,
) -> None:
    responder = server.app[appkeys.OCSP]
    base_url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        first_slot, second_slot = await slots(owner_url, 1)
        assert (await apply_as(http, base_url, first_slot, csr()))[0] == 201
        status, body = await apply_as(http, base_url, second_slot, csr())
        assert status == 201
        presigned = int(body["serial"], 16)
        await OcspPresigner(pool=db_pool, signer=signer, clock=clock).run("issuing-1")
        status, body = await apply_as(http, base_url, (await slots(owner_url, 1))[0], csr())
        assert status == 201
        no_stored = int(body["serial"], 16)
    ids = cert_id_hashes(issuing(ca_config))
    anon = new_client()
    port = signer_metrics_port

    async def signatures() -> float:
        return (await signer_metrics(port))[RESPONDER]

    before = await signatures()
    # the offline root's CertID (for the issuing CA's certificate): unauthorized, unsigned
    root_ids = cert_id_hashes(root(ca_config))
    answer = await ask(anon, ocsp_request(root_ids, issuing(ca_config).serial_number, b"n" * 8))
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    # a stored answer, without a nonce: no signature
    answer = await ask(anon, ocsp_request(ids, presigned, None))
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert await signatures() == before
    # a serial never issued: signed once (without the nonce), then served from the cache
    fake = secrets.randbits(100) | 1 << 99
    first = await ask(anon, ocsp_request(ids, fake, b"1" * 16))
    assert first.certificate_status == ocsp.OCSPCertStatus.UNKNOWN and nonce_of(first) is None
    assert await signatures() == before + 1
    for nonce in (None, b"2" * 16, None):
        again = await ask(anon, ocsp_request(ids, fake, nonce))
        assert again.tbs_response_bytes == first.tbs_response_bytes
    assert await signatures() == before + 1
    # a nonce within the budget: signed afresh, echoed
    answer = await ask(anon, ocsp_request(ids, presigned, b"3" * 16))
    assert nonce_of(answer) == b"3" * 16
    assert await signatures() == before + 2
    # no budget left (0 = none fresh): the stored answer without the nonce, else tryLater
    kept = responder.budget
    responder.budget = TokenBucket(0, 0)
    try:
        answer = await ask(anon, ocsp_request(ids, presigned, b"4" * 16))
        assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.serial_number == presigned and nonce_of(answer) is None
        for serial in (no_stored, secrets.randbits(100) | 1 << 99):
            answer = await ask(anon, ocsp_request(ids, serial, None))
            assert answer.response_status == ocsp.OCSPResponseStatus.TRY_LATER
        assert (
            await ask(anon, ocsp_request(ids, fake, None))
        ).certificate_status == ocsp.OCSPCertStatus.UNKNOWN  # still cached
    finally:
        responder.budget = kept
    assert await signatures() == before + 2
    metrics = (await anon.call("GET", "/metrics")).text
    for line in (
        'ca_gateway_ocsp_budget_total{outcome="stored"} 1.0',
        'ca_gateway_ocsp_budget_total{outcome="try_later"} 2.0',
        'ca_gateway_ocsp_budget_total{outcome="fresh"} 2.0',
        'ca_gateway_ocsp_responses_total{source="cached"} 4.0',
    ):
        assert line in metrics, line


async def flooded_window(
    base_url: str, tmp_path: Path, seconds: float, work: list[Slot], signer_port: int
) -> dict[str, Any]:
    """Applicants for ``seconds`` while ``FLOOD_CLIENTS`` clients flood the responder from
    another process; what each side saw and the signer's and gateway's counts meanwhile."""
    before = await signer_metrics(signer_port)
    gw_before = await asyncio.to_thread(scrape, f"{base_url}/metrics")
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.ocsp_flood",
        f"{base_url}/ocsp",
        str(tmp_path / "issuer.pem"),
        str(tmp_path / "serials"),
        str(seconds),
        str(FLOOD_CLIENTS),
        str(FLOOD_PAUSE),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # the flood is on
    latencies, _, errors = await applicants(base_url, seconds - 1.0, work)
    out, _ = await proc.communicate()
    elapsed = time.monotonic() - t0
    after = await signer_metrics(signer_port)
    gw_after = await asyncio.to_thread(scrape, f"{base_url}/metrics")
    assert proc.returncode == 0
    name = 'ca_gateway_ocsp_budget_total{outcome="%s"}'
    return {
        "latencies": latencies,
        "errors": errors,
        "flood": json.loads(out),
        "elapsed": elapsed,
        "signatures": after[RESPONDER] - before[RESPONDER],
        "budget": {
            k: gw_after[name % k] - gw_before[name % k] for k in ("fresh", "stored", "try_later")
        },
    }


async def test_a_flood_does_not_drive_the_token_nor_slow_issuance(
    owner_url: str,
    server: Any,
    base_url: str,
    db_pool: Any,
    signer: Any,
    clock: Any,
    ca_config: Path,
    signer_metrics_port: int,
    tmp_path: Path,
) -> None:
    """Baseline and flood alternate (``ROUNDS`` times), so that the load of the machine the
    test shares weighs on both alike; the flood runs 2x as long as the baseline in all."""
    config = server.app[appkeys.CONFIG]
    rate, burst = config.ocsp_fresh_per_second, config.ocsp_fresh_burst
    assert (rate, burst) == (50, 50)  # the defaults
    base_s, flood_s = BASE_SECONDS / ROUNDS, FLOOD_SECONDS / ROUNDS

    def subscribers(seconds: float) -> int:  # two applications each
        return APPLICANTS * math.ceil((seconds / APPLY_PAUSE + 2) / 2)

    # the first baseline's certificates get stored answers, as the periodic job would make
    base, serials, errors = await applicants(
        base_url, base_s, await slots(owner_url, subscribers(base_s))
    )
    assert errors == []
    stats = await OcspPresigner(pool=db_pool, signer=signer, clock=clock).run("issuing-1")
    assert stats.errors == 0
    (tmp_path / "serials").write_text("\n".join(serials))
    (tmp_path / "issuer.pem").write_bytes(
        issuing(ca_config).public_bytes(serialization.Encoding.PEM)
    )
    for attempt in range(ATTEMPTS):
        flooded: list[float] = []
        windows = []
        for n in range(ROUNDS):
            if n or attempt:
                more, _, errors = await applicants(
                    base_url, base_s, await slots(owner_url, subscribers(base_s))
                )
                assert errors == []
                base = more if (attempt and not n) else base + more
            await asyncio.sleep(burst / rate)  # the bucket is full again
            window = await flooded_window(
                base_url,
                tmp_path,
                flood_s,
                await slots(owner_url, subscribers(flood_s)),
                signer_metrics_port,
            )
            windows.append(window)
            flooded += window["latencies"]
        report = (
            f"attempt {attempt + 1}: issuance p50/p90/p99/max: baseline {spread(base)} "
            f"({len(base)}), flooded {spread(flooded)} ({len(flooded)}); floods "
            + "; ".join(
                f"{w['flood']}, OCSP signatures {w['signatures']:.0f} in "
                f"{w['elapsed']:.1f}s, budget {w['budget']}"
                for w in windows
            )
        )
        print(report)
        for w in windows:  # on every attempt
            flood = w["flood"]
            assert w["errors"] == [], report
            assert flood.get("error", 0) == 0, report
            # the flood was real: far beyond the budget, and met by every kind of answer
            assert flood["sent"] > 5 * (rate * w["elapsed"] + burst), report
            assert flood.get("try_later", 0) > 0 and flood.get("nonce_dropped", 0) > 0, report
            assert flood.get("nonce_echoed", 0) > 0 and flood.get("unknown", 0) > 0, report
            # the token signed no more OCSP answers than the budget allows
            assert w["signatures"] <= rate * w["elapsed"] + burst, report
            assert w["signatures"] <= w["budget"]["fresh"], report
        assert len(base) >= APPLICANTS * 5 and len(flooded) >= APPLICANTS * 10, report
        # and applicants did not notice; the gateway shares this process and 2 cores with
        # everything else on the machine, so a second measurement decides before failing
        if p99(flooded) <= 2 * p99(base):
            break
    assert p99(flooded) <= 2 * p99(base), report


async def test_crl_numbers_from_a_database_that_went_back_are_refused(
    server: Any,
    owner_url: str,
    signer_metrics_port: int,
) -> None:
    crl_service, issuers = server.app[appkeys.CRL], server.app[appkeys.ISSUERS]
    issuer_id = issuers.ids["issuing-1"]
    await crl_service.regenerate(issuer_id)  # the gateway's numbers increase: accepted
    der = await crl_service.regenerate(issuer_id)
    last = (
        x509.load_der_x509_crl(der)
        .extensions.get_extension_for_class(x509.CRLNumber)
        .value.crl_number
    )
    conn = await connect(owner_url)
    try:
        # a restored database: its counter is below what the signer has signed
        await conn.execute(
            "UPDATE crl_state SET crl_number = 0, der = NULL, der_number = NULL"
            " WHERE issuer_id = $1",
            issuer_id,
        )
        before = await signer_metrics(signer_metrics_port)
        with pytest.raises(SignerError) as refused:
            await crl_service.regenerate(issuer_id)
        assert refused.value.kind is ErrorKind.CRL_NUMBER_NOT_INCREASING
        after = await signer_metrics(signer_metrics_port)
        assert (
            after['ca_signer_errors_total{kind="crl_number_not_increasing"}']
            == before.get('ca_signer_errors_total{kind="crl_number_not_increasing"}', 0) + 1
        )
        assert (
            after['ca_signer_key_signatures_total{role="ca"}']
            == before['ca_signer_key_signatures_total{role="ca"}']
        )  # nothing signed
        assert await conn.fetchval("SELECT dirty FROM crl_state WHERE issuer_id = $1", issuer_id)
        # the documented recovery: raise the counter above the signer's record
        await conn.execute(
            "UPDATE crl_state SET crl_number = $2 WHERE issuer_id = $1", issuer_id, last
        )
    finally:
        await conn.close()
    crl = x509.load_der_x509_crl(await crl_service.regenerate(issuer_id))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == last + 1
