"""`make bench-e2e`: certificates per second through the whole stack, against the raw token rate.

For each CA key type, everything on this machine: a private PostgreSQL cluster (durable
settings: fsync and synchronous_commit on), a fresh SoftHSM token with the dev ceremony done, the
real ``ca-signer`` daemon and ``--gateways`` real ``ca-gateway`` processes (captcha off), and
this load generator (asyncio streams, uvloop; aiohttp only to seed) applying for certificates
through ``POST /api/v1/certificates`` at ``--concurrency`` for ``--requests`` requests.

Subscribers: ``--api-subscribers`` are registered through the RA API and log in through
``POST /api/v1/session`` (Argon2 each time, so only a handful). The rest are inserted directly
into the database with a session row each (the session cookie is random, only its SHA-256 is
stored, exactly as a login stores it): logging in thousands of accounts through Argon2 would
take minutes and measure nothing this benchmark is about. Each subscriber applies for one
signing and one encryption certificate; CSRs are pre-generated from a pool of subscriber keys of
the CA's key family (RSA-2048 or P-256), since the subject comes from the registration anyway.

A warm-up (``--warmup`` requests on their own subscribers) runs first and is not timed. The raw
signing rate is measured with the same number of signer workers before and after, exactly as
``bench/signer.py`` does; the ratio uses the mean. Afterwards every answered certificate must be
in the database (row count of issued certificates equals the 201 answers) and a sample is
verified against the issuing CA and compared byte for byte with the stored DER.

The last lines printed are one JSON object per key type:
{"key", "concurrency", "requests", "errors", "certs_per_s", "p50_ms", "p99_ms",
 "raw_sign_per_s", "ratio"}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ocsp import start_cluster  # noqa: E402
from bench.signer import _setup_softhsm, raw_rate  # noqa: E402
from tests.support.identities import national_id  # noqa: E402

BIN = Path(sys.executable).parent
KEY_TYPES = {"rsa2048": "rsa2048", "p256": "p256"}
PASSWORD = "bench-pw-1"  # a throw-away benchmark account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(config: Path, dsn: str, pool_max: int, signer_metrics: int) -> None:
    import tomli_w

    from gateway.config import LIMIT_KEYS

    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["gateway"].update({"captcha": "off", "log_level": "warning"})
    data["signer"].update({"log_level": "warning", "metrics_port": signer_metrics})
    # the bench database is the superuser's own (no roles): the gateway migrates it, as it did
    # before the owner/application split; a flood of logins from one address is the point
    data["database"].update(
        {"url": dsn, "pool_min": min(4, pool_max), "pool_max": pool_max, "migrate_on_start": True}
    )
    data["ratelimit"] = dict.fromkeys(LIMIT_KEYS, 0)
    config.write_text(tomli_w.dumps(data), encoding="utf-8")


def csr_pool(kind: str, n: int) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    out = []
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ignored")])
    for _ in range(n):
        key: Any = (
            rsa.generate_private_key(65537, 2048)
            if kind == "rsa2048"
            else ec.generate_private_key(ec.SECP256R1())
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        out.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return out


async def seed_direct(dsn: str, n: int, tag: str) -> list[tuple[str, str]]:
    """``n`` subscribers with accounts and live sessions; returns (cookie, csrf) pairs."""
    from argon2 import PasswordHasher

    from db.pool import connect

    pw_hash = PasswordHasher().hash(PASSWORD)
    now = datetime.now(UTC)
    conn = await connect(dsn)
    try:
        first = await conn.fetchval("SELECT coalesce(max(id), 0) FROM subscribers")
        await conn.copy_records_to_table(
            "subscribers",
            records=[
                (
                    f"B{tag}{i:07d}",
                    "Bench User",
                    f"b{tag}{i}@example.tw",
                    f"B{tag}{i:07d}-63-BENCH",
                    ["Bench"],
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
            records=[(sid, f"b{tag}{sid:07d}", pw_hash, False) for sid in ids],
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
        await conn.execute("ANALYZE")
        return pairs
    finally:
        await conn.close()


async def seed_api(base: str, dsn: str, n: int) -> list[tuple[str, str]]:
    """The real path for a few: RA registration, first login, forced password change."""
    import aiohttp
    from argon2 import PasswordHasher

    from db.pool import connect
    from db.queries import officers

    conn = await connect(dsn)
    try:
        await officers.insert(conn, "bench-ra", PasswordHasher().hash("bench-officer-pw"))
    finally:
        await conn.close()
    out = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as ra:
        r = await ra.post(
            f"{base}/api/v1/ra/session", json={"login": "bench-ra", "password": "bench-officer-pw"}
        )
        ra_csrf = (await r.json())["csrf_token"]
        for i in range(n):
            tag = secrets.token_hex(4).upper()
            body = {
                "id_number": national_id(),
                "name": "API User",
                "email": f"r{tag}@example.tw",
                "subject": {"cn": f"R{tag}-63-API", "o": "Example"},
                "usages": ["signing", "encryption"],
            }
            r = await ra.post(
                f"{base}/api/v1/ra/subscribers", json=body, headers={"X-CSRF-Token": ra_csrf}
            )
            assert r.status == 201, await r.text()
            slip = await r.json()
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                r = await s.post(
                    f"{base}/api/v1/session",
                    json={"account": slip["account"], "password": slip["initial_password"]},
                )
                assert r.status == 200, await r.text()
                csrf = (await r.json())["csrf_token"]
                r = await s.post(
                    f"{base}/api/v1/password",
                    headers={"X-CSRF-Token": csrf},
                    json={
                        "old_password": slip["initial_password"],
                        "new_password": f"pw-{i}-{tag}"[:16],
                    },
                )
                assert r.status == 204, await r.text()
                token = next(c.value for c in s.cookie_jar if c.key == "ca_session")
            out.append((token, csrf))
            del i
    return out


async def load(
    bases: list[str], jobs: list[tuple[str, str, str, str]], concurrency: int
) -> tuple[float, list[float], list[tuple[int, str]], list[str]]:
    """POST every job at ``concurrency``; returns (seconds, latencies, errors, certificates).

    The generator shares the machine's cores with what it measures, so it is kept lean: a
    minimal HTTP/1.1 keep-alive client on asyncio streams (one connection per worker), every
    request pre-encoded to bytes before the clock starts, orjson for the answers. It still goes
    through the real HTTP API: status line and Content-Length are parsed, the body is read in
    full and every 201 answer's certificate is kept for the checks afterwards."""
    import orjson

    from gateway import terms

    latencies: list[float] = []
    errors: list[tuple[int, str]] = []
    certs: list[str] = []
    hosts = [b.removeprefix("http://") for b in bases]
    prepared = []
    for i, (token, csrf, usage, csr) in enumerate(jobs):
        body = orjson.dumps({"usage": usage, "csr": csr, "terms_version": terms.VERSION})
        head = (
            f"POST /api/v1/certificates HTTP/1.1\r\nHost: {hosts[i % len(hosts)]}\r\n"
            f"Content-Type: application/json\r\nX-CSRF-Token: {csrf}\r\n"
            f"Cookie: ca_session={token}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        prepared.append((i % len(hosts), head.encode("ascii") + body))
    it = iter(prepared)

    async def worker(n: int) -> None:
        perf = time.perf_counter
        conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            for host_ix, request in it:
                t0 = perf()
                try:
                    conn = conns.get(host_ix)
                    if conn is None:
                        h, p = hosts[host_ix].rsplit(":", 1)
                        conn = conns[host_ix] = await asyncio.open_connection(h, int(p))
                    reader, writer = conn
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    lower = head.lower()
                    at = lower.find(b"\r\ncontent-length:")
                    if at < 0:
                        raise ConnectionError("answer without Content-Length")
                    length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
                    raw = await reader.readexactly(length)
                    if b"\r\nconnection: close" in lower:
                        writer.close()
                        del conns[host_ix]
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append((0, repr(exc)))
                    stale = conns.pop(host_ix, None)
                    if stale is not None:
                        stale[1].close()
                    continue
                latencies.append(perf() - t0)
                if status == 201:
                    certs.append(orjson.loads(raw)["certificate"])
                else:
                    errors.append((status, raw[:200].decode(errors="replace")))
        finally:
            for _, writer in conns.values():
                writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return time.perf_counter() - t0, latencies, errors, certs


async def top_statements(dsn: str, n: int = 12) -> list[dict[str, Any]]:
    """Diagnosis (``--pg-stat-statements``): where PostgreSQL spent its time while timed."""
    from db.pool import connect

    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
                      round(mean_exec_time::numeric, 3) AS mean_ms, rows,
                      left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query
               FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1""",
            n,
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def reset_statements(dsn: str) -> None:
    from db.pool import connect

    conn = await connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this machine's processes, by component (from /proc)."""
    hz = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    out: dict[str, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(pid) == me:
            kind = "load generator"
        elif "ca-gateway" in cmd:
            kind = "gateway"
        elif "ca-signer" in cmd:
            kind = "signer daemon"
        elif "multiprocessing" in cmd:
            kind = "signer workers"
        elif cmd.startswith("postgres"):
            kind = "postgres"
        else:
            continue
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / hz
    return out


def metric_samples(url: str) -> list[Any]:
    """Every sample a Prometheus endpoint exposes right now."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def wait_presign_pass(base: str, seconds: float = 60) -> None:
    """The gateway's OCSP pre-signing job makes its first pass a few seconds after start and
    then every 10 minutes. Timing starts after that first pass, as in any window but one in
    ten minutes of a running service; its steady cost (one OCSP signature per new certificate
    per round, in the signer's bulk lane) is what ``make bench-ocsp`` measures."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if any(
            s.name == "ca_gateway_ocsp_presign_duration_seconds_count" and s.value
            for s in metric_samples(f"{base}/metrics")
        ):
            return
        time.sleep(0.2)
    raise SystemExit("the gateway's first OCSP pre-signing pass did not finish")


def signer_totals(port: int) -> dict[str, float]:
    """The signer's batch and per-item counters, to tell batching apart from token time."""
    wanted = {
        "ca_signer_batch_size_count",
        "ca_signer_batch_size_sum",
        "ca_signer_item_duration_seconds_count",
        "ca_signer_item_duration_seconds_sum",
    }
    out: dict[str, float] = {}
    for s in metric_samples(f"http://127.0.0.1:{port}/metrics"):
        if s.name in wanted:
            out[s.name] = s.value
        elif s.name == "ca_signer_signatures_total":
            out[f"signed {s.labels['operation']}"] = s.value
    return out


def signer_summary(before: dict[str, float], after: dict[str, float]) -> str:
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    batches = d.get("ca_signer_batch_size_count", 0.0)
    items = d.get("ca_signer_item_duration_seconds_count", 0.0)
    mean_batch = d.get("ca_signer_batch_size_sum", 0.0) / max(1.0, batches)
    item_us = d.get("ca_signer_item_duration_seconds_sum", 0.0) / max(1.0, items) * 1e6
    signed = ", ".join(f"{k} {v:.0f}" for k, v in d.items() if k.startswith("signed"))
    return (
        f"{batches:.0f} batches, mean {mean_batch:.1f} items; {item_us:.0f} µs wall per "
        f"item; {signed}"
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def verify_stored(dsn: str, config: Path, certs: list[str], expected: int) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from config.loader import load as load_config
    from config.manifest import load_manifest, manifest_path
    from db.pool import connect

    issuing = next(
        e for e in load_manifest(manifest_path(load_config(config))) if e.active
    ).load_certificate()
    conn = await connect(dsn)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM certificates WHERE status = 'issued'")
        if stored != expected:
            raise SystemExit(f"{stored} issued rows in the database, {expected} answered 201")
        sample = certs[:: max(1, len(certs) // 100)]
        for pem in sample:
            cert = x509.load_pem_x509_certificate(pem.encode())
            cert.verify_directly_issued_by(issuing)
            der = await conn.fetchval(
                "SELECT der FROM certificates WHERE serial = $1", format(cert.serial_number, "x")
            )
            if bytes(der) != cert.public_bytes(serialization.Encoding.DER):
                raise SystemExit("a certificate differs from its stored DER")
        return len(sample)
    finally:
        await conn.close()


def start_gateways(
    config: Path, ports: list[int], env: dict[str, str], log: Path
) -> list[subprocess.Popen[bytes]]:
    procs = []
    out = open(log, "ab")  # the processes inherit it
    for port in ports:
        procs.append(
            subprocess.Popen(
                [str(BIN / "ca-gateway"), "--config", str(config)],
                env={**os.environ, **env, "CA_GATEWAY_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    import urllib.request

    for port in ports:
        end = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise SystemExit(f"gateway on port {port} not ready; see {log}")
            time.sleep(0.2)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def bench(key: str, args: argparse.Namespace, root: Path, cluster: Any) -> dict:
    import uvloop

    from tests.support.signer_proc import running_signer
    from tests.support.softhsm import make_ca

    ports = [free_port() for _ in range(args.gateways)]
    config = make_ca(root / key, KEY_TYPES[key], port=ports[0])
    dsn = cluster.create_database(f"bench_e2e_{key}")
    signer_metrics = free_port()
    configure(config, dsn, args.pool_max, signer_metrics)
    if args.synchronous_commit != "on":  # diagnosis only: the figures use the default (on)
        cluster._psql(
            f"ALTER DATABASE bench_e2e_{key} SET synchronous_commit = {args.synchronous_commit}"
        )
    per_sub = 2
    direct = (args.requests + args.warmup) // per_sub + 1
    print(f"{key}: generating {args.csrs} CSRs, seeding {direct} subscribers", flush=True)
    csrs = csr_pool(key, args.csrs)
    raw1 = raw_rate(config, args.workers, args.seconds)
    print(f"{key}: raw C_Sign with {args.workers} workers: {raw1:,.0f}/s", flush=True)
    log = root / f"{key}-gateway.log"
    with running_signer(config, workers=args.workers, log=root / f"{key}-signer.log"):
        gws = start_gateways(config, ports, {"CA_GATEWAY_CAPTCHA": "off"}, log)
        try:
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            sessions = uvloop.run(seed_api(bases[0], dsn, args.api_subscribers))
            sessions += uvloop.run(seed_direct(dsn, direct, key[:1]))
            wait_presign_pass(bases[0])
            jobs = [
                (tok, csrf, usage, csrs[(i * 2 + j) % len(csrs)])
                for i, (tok, csrf) in enumerate(sessions)
                for j, usage in enumerate(("signing", "encryption"))
            ]
            warm, jobs = jobs[: args.warmup], jobs[args.warmup : args.warmup + args.requests]
            _, _, werr, wcerts = uvloop.run(load(bases, warm, args.concurrency))
            print(f"{key}: warm-up {len(warm)} requests, {len(werr)} errors", flush=True)
            if args.pg_stat_statements:
                uvloop.run(reset_statements(dsn))
            sig0, cpu0 = signer_totals(signer_metrics), cpu_seconds()
            seconds, lat, errors, certs = uvloop.run(load(bases, jobs, args.concurrency))
            cpu1, sig1 = cpu_seconds(), signer_totals(signer_metrics)
            print(f"{key}: signer: {signer_summary(sig0, sig1)}", flush=True)
            used = {k: round((cpu1.get(k, 0.0) - v) / seconds, 2) for k, v in cpu0.items()}
            print(f"{key}: CPU cores used while timed: {used}", flush=True)
            per_cert = {k: round(v * 1e6 / max(1, len(certs) / seconds)) for k, v in used.items()}
            print(f"{key}: CPU µs per certificate: {per_cert}", flush=True)
            if args.pg_stat_statements:
                for row in uvloop.run(top_statements(dsn)):
                    print(f"{key}: pg: {row}", flush=True)
        finally:
            stop(gws)
    rate = len(certs) / seconds
    print(
        f"{key}: {len(certs)} certificates in {seconds:.2f}s = {rate:,.0f}/s, "
        f"{len(errors)} errors, p50 {percentile(lat, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(lat, 0.99) * 1000:.1f} ms",
        flush=True,
    )
    if errors:
        print(f"{key}: first errors: {errors[:3]}", flush=True)
    checked = uvloop.run(verify_stored(dsn, config, wcerts + certs, len(wcerts) + len(certs)))
    print(
        f"{key}: every answered certificate stored; {checked} verified against the CA and "
        "the stored DER",
        flush=True,
    )
    raw2 = raw_rate(config, args.workers, args.seconds)
    print(f"{key}: raw C_Sign again: {raw2:,.0f}/s", flush=True)
    raw = (raw1 + raw2) / 2
    return {
        "key": key,
        "concurrency": args.concurrency,
        "requests": len(jobs),
        "errors": len(errors),
        "certs_per_s": round(rate, 1),
        "p50_ms": round(percentile(lat, 0.5) * 1000, 1),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
        "raw_sign_per_s": round(raw, 1),
        "ratio": round(rate / raw, 3),
        "workers": args.workers,
        "gateways": args.gateways,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="rsa2048,p256")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="signer worker processes")
    parser.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="gateway processes (on 2 cores 1 beats 2: bigger batches, no "
        "cross-process lock waits)",
    )
    parser.add_argument("--pool-max", type=int, default=16, help="database pool per gateway")
    parser.add_argument("--api-subscribers", type=int, default=4)
    parser.add_argument("--csrs", type=int, default=32, help="distinct subscriber keys")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each raw phase")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--pg-stat-statements",
        action="store_true",
        help="diagnosis only: print PostgreSQL's busiest statements while timed",
    )
    parser.add_argument(
        "--auto-explain-ms",
        type=float,
        default=0,
        help="diagnosis only: log plans of statements slower than this "
        "(in the kept folder's pg log; use with --keep)",
    )
    parser.add_argument(
        "--synchronous-commit",
        default="on",
        choices=["on", "off"],
        help="diagnosis only: 'off' shows what commit fsyncs cost",
    )
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    _setup_softhsm(root)
    diag = (
        {
            "auto_explain.log_min_duration": f"'{args.auto_explain_ms}ms'",
            "auto_explain.log_analyze": "on",
            "auto_explain.log_nested_statements": "on",
        }
        if args.auto_explain_ms
        else {}
    )
    preload = ",".join(
        ([("pg_stat_statements")] if args.pg_stat_statements else [])
        + (["auto_explain"] if args.auto_explain_ms else [])
    )
    cluster = start_cluster(root, preload=preload, settings=diag)
    try:
        lines = [bench(k, args, root, cluster) for k in args.keys.split(",")]
    finally:
        cluster.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
