"""`make bench-signer`: the signer's issuance rate against the token's raw signing rate.

For each CA key type, in one run on one fresh token and with the same number of worker
processes: (1) the raw rate, N processes each looping C_Sign over a digest-sized input on the
issuing CA key; (2) the issuance rate of the real ``ca-signer`` daemon through its RPC, every
certificate built, signed on the token and verified by the signer; then the raw rate once more,
so the ratio uses the mean of the two raw figures and machine drift shows. A sample of the issued
certificates is checked against the issuing CA here too.

The last lines printed are one JSON object per key type:
{"key": "rsa2048", "workers": N, "raw_sign_per_s": X, "issue_per_s": Y, "ratio": Y/X}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY_TYPES = {"rsa2048": "rsa2048", "p256": "p256"}
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def _setup_softhsm(root: Path) -> None:
    tokens = root / "tokens"
    tokens.mkdir(parents=True)
    template = (REPO / "softhsm/softhsm2.conf.template").read_text()
    conf = root / "softhsm2.conf"
    conf.write_text(template.replace("@TOKENDIR@", str(tokens)))
    os.environ["SOFTHSM2_CONF"] = str(conf)


def _raw_worker(config: str, index: int, seconds: float, start_at: float, out: mp.Queue) -> None:
    from pkcs11 import Mechanism

    from config.loader import load
    from config.manifest import load_manifest, manifest_path
    from config.token import token_config
    from signer.hsm.token import TokenHandle

    cfg = load(config)
    label = next(e.key_label for e in load_manifest(manifest_path(cfg)) if e.active)
    time.sleep(index * 0.25)  # staggered log-in, as the signer does
    handle = TokenHandle(token_config(cfg))
    handle.open()
    key = handle.find_private_key(label)
    is_rsa = handle.find_public_key(label).__class__.__name__.find("RSA") >= 0
    data = DIGEST_INFO_SHA256 + secrets.token_bytes(32) if is_rsa else secrets.token_bytes(32)
    mech = Mechanism.RSA_PKCS if is_rsa else Mechanism.ECDSA
    while time.time() < start_at:
        time.sleep(0.001)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        key.sign(data, mechanism=mech)
        n += 1
    out.put(n / (time.perf_counter() - t0))
    handle.close()


def worker_allocator(config: Path) -> tuple[str, dict[str, str]]:
    """The signer workers' allocator under ``config``, and the environment that gives it."""
    from config.loader import load
    from signer.allocator import preload_library, worker_environment
    from signer.config import load_signer_config

    name = load_signer_config(load(config)).worker_allocator
    return name, worker_environment(preload_library(name))


def raw_rate(config: Path, workers: int, seconds: float) -> float:
    """C_Sign per second of ``workers`` processes set up as the signer's workers are (same
    token, same log-in, same allocator), each looping over one digest-sized input."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 0.5 + workers * 0.25
    procs = [
        ctx.Process(target=_raw_worker, args=(str(config), i, seconds, start_at, out))
        for i in range(workers)
    ]
    saved = dict(os.environ)
    os.environ.update(worker_allocator(config)[1])
    try:
        for p in procs:
            p.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rates = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def _requests(n: int, subject_keys: list[bytes]) -> list[Any]:
    from signer.protocol import IssueRequest

    now = int(time.time())
    reqs = []
    for i in range(n):
        reqs.append(
            IssueRequest(
                spki=subject_keys[i % len(subject_keys)],
                subject=(("2.5.4.6", "TW"), ("2.5.4.3", f"A{i:09d}-BENCH")),
                profile="signing" if i % 2 else "encryption",
                serial=secrets.randbits(127) | (1 << 126),
                not_before=now - 60,
                not_after=now + 365 * 86400,
            )
        )
    return reqs


async def _issue_load(sock: Path, reqs: list[Any], batch: int, inflight: int) -> tuple[float, list]:
    from signer.client import SignerClient
    from signer.protocol import Result

    client = SignerClient([f"unix:{sock}"], timeout=60)
    await client.health()
    chunks = [reqs[i : i + batch] for i in range(0, len(reqs), batch)]
    sem = asyncio.Semaphore(inflight)
    results: list[Result] = []

    async def one(chunk: list[Any]) -> None:
        async with sem:
            results.extend(await client._call("issue", chunk, None))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in chunks))
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed, results


def issue_rate(config: Path, workers: int, seconds_hint: float, raw: float) -> tuple[float, int]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from config.loader import load
    from config.manifest import load_manifest, manifest_path
    from tests.support.signer_proc import running_signer, socket_of

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    keys = [rsa.generate_private_key(65537, 2048).public_key() for _ in range(4)]
    keys += [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(4)]
    subject_keys = [k.public_bytes(der, spki) for k in keys]
    n = max(2000, int(raw * seconds_hint))
    reqs = _requests(n, subject_keys)
    warm = _requests(200, subject_keys)
    cfg = load(config)
    issuing = next(e for e in load_manifest(manifest_path(cfg)) if e.active).load_certificate()
    log = config.parent / "signer.log"
    try:
        with running_signer(config, workers=workers, log=log):
            asyncio.run(_issue_load(socket_of(config), warm, 64, 4))
            elapsed, results = asyncio.run(_issue_load(socket_of(config), reqs, 128, 8))
    except Exception:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise
    errors = [r for r in results if r.error is not None]
    if errors:
        raise SystemExit(f"{len(errors)} issuance errors, first: {errors[0].error!r}")
    for r in results[:: max(1, len(results) // 50)]:  # verify a sample here as well
        cert = x509.load_der_x509_certificate(r.der or b"")
        cert.verify_directly_issued_by(issuing)
    return len(results) / elapsed, len(results)


def bench(key: str, workers: int, seconds: float, root: Path) -> dict:
    from tests.support.softhsm import make_ca

    config = make_ca(root / key, KEY_TYPES[key])
    raw1 = raw_rate(config, workers, seconds)
    allocator = worker_allocator(config)[0]
    print(f"{key}: raw C_Sign with {workers} workers ({allocator}): {raw1:,.0f}/s", flush=True)
    issue, count = issue_rate(config, workers, seconds, raw1)
    print(f"{key}: issued {count} certificates at {issue:,.0f}/s", flush=True)
    raw2 = raw_rate(config, workers, seconds)
    print(f"{key}: raw C_Sign again: {raw2:,.0f}/s", flush=True)
    raw = (raw1 + raw2) / 2
    return {
        "key": key,
        "workers": workers,
        "raw_sign_per_s": round(raw, 1),
        "issue_per_s": round(issue, 1),
        "ratio": round(issue / raw, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each phase")
    parser.add_argument("--keys", default="rsa2048,p256")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-signer-"))
    _setup_softhsm(root)
    lines = [bench(k, args.workers, args.seconds, root) for k in args.keys.split(",")]
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
