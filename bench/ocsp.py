"""`make bench-ocsp`: OCSP pre-signing of 100,000 certificates against the token's raw rate.

For each CA key type, on a fresh token and a fresh database in a private PostgreSQL cluster
(durable settings: fsync on): synthetic certificate rows are inserted directly (COPY), then the
real pre-signing job (``gateway.services.ocsp_presign``) drives the real ``ca-signer`` daemon
through its RPC; only the job is timed. Every response is built, signed on the token and
verified by the signer; the job stores each in ``ocsp_responses``. The raw rate is measured in
the same run with the same number of worker processes, before and after, exactly as
``bench/signer.py`` does (its function is reused); the ratio uses their mean. Afterwards the
row count is checked and a sample of stored responses is parsed and verified here.

With ``--crl`` it also revokes ``--crl-entries`` certificates and times one CRL generation
(streamed from the database, signed by the signer): see ``bench/crl.py``.

The last lines printed are one JSON object per key type:
{"key", "responses", "responses_per_s", "raw_sign_per_s", "ratio", ...}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.signer import _setup_softhsm, raw_rate  # noqa: E402

KEY_TYPES = {"rsa2048": "rsa2048", "p256": "p256"}


def start_cluster(root: Path, *, preload: str = "", settings: dict[str, str] | None = None):
    import os

    from db.embedded import Cluster

    os.chmod(root, 0o755)  # the server runs as the postgres user when we are root
    cluster = Cluster(root / "pg")
    cluster.init(fast=False)
    extra = dict(settings or {})
    if preload:
        extra["shared_preload_libraries"] = f"'{preload}'"
    if extra:
        with open(cluster.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
            for key, value in extra.items():
                fh.write(f"{key} = {value}\n")
    cluster.start()
    return cluster


async def seed(dsn: str, config: Path, n: int) -> str:
    """Migrate, register the issuers from the manifest, insert ``n`` issued certificates."""
    from cryptography.hazmat.primitives import serialization

    from config.loader import load
    from config.manifest import load_manifest, manifest_path
    from db.migrate import migrate
    from db.pool import connect

    conn = await connect(dsn)
    try:
        await migrate(conn)
        active = ""
        for e in load_manifest(manifest_path(load(config))):
            cert = e.load_certificate()
            await conn.execute(
                """INSERT INTO issuers (name, subject, cert_der, not_before, not_after, active,
                                        role)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                e.name,
                cert.subject.rfc4514_string(),
                cert.public_bytes(serialization.Encoding.DER),
                cert.not_valid_before_utc,
                cert.not_valid_after_utc,
                e.active,
                e.role,
            )
            if e.active:
                active = e.name
        issuer_id = await conn.fetchval("SELECT id FROM issuers WHERE name = $1", active)
        sub = await conn.fetchval(
            """INSERT INTO subscribers (id_number, name, email, subject_cn, usages)
               VALUES ('BENCH1', 'bench', 'bench@example.tw', 'BENCH1-CN', '{signing}')
               RETURNING id"""
        )
        now = datetime.now(UTC)
        nb, na = now - timedelta(days=1), now + timedelta(days=365)
        pk = hashlib.sha256(b"bench").digest()
        records = [
            (
                format(secrets.randbits(127) | (1 << 126), "x"),
                issuer_id,
                sub,
                "signing",
                "signing",
                "issued",
                "CN=BENCH",
                pk,
                b"\x30\x00",
                nb,
                na,
                now,
            )
            for _ in range(n)
        ]
        await conn.copy_records_to_table(
            "certificates",
            records=records,
            columns=[
                "serial",
                "issuer_id",
                "subscriber_id",
                "usage",
                "profile",
                "status",
                "subject",
                "public_key_sha256",
                "der",
                "not_before",
                "not_after",
                "issued_at",
            ],
        )
        await conn.execute("ANALYZE")
        return active
    finally:
        await conn.close()


async def presign(dsn: str, sock: Path, issuer: str, n: int) -> dict:
    from cryptography.x509 import ocsp

    from db.pool import create_pool
    from gateway.services.ocsp_presign import OcspPresigner
    from signer.client import SignerClient
    from signer.protocol import OcspRequest

    pool = await create_pool(dsn, min_size=2, max_size=8)
    client = SignerClient([f"unix:{sock}"], timeout=60)
    try:
        await client.health()
        now = int(time.time())
        warm = [
            OcspRequest(issuer, secrets.randbits(100) | (1 << 99), "good", now, now + 60)
            for _ in range(512)
        ]
        await client.sign_ocsp(warm)
        job = OcspPresigner(pool=pool, signer=client, clock=lambda: datetime.now(UTC))
        stats = await job.run(issuer)
        stored = await pool.fetchval("SELECT count(*) FROM ocsp_responses")
        sample = await pool.fetch(
            """SELECT c.serial, o.der, i.cert_der FROM ocsp_responses o
               JOIN certificates c ON c.id = o.certificate_id
               JOIN issuers i ON i.id = o.issuer_id
               ORDER BY random() LIMIT 200"""
        )
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

        for row in sample:
            resp = ocsp.load_der_ocsp_response(bytes(row["der"]))
            ca = x509.load_der_x509_certificate(bytes(row["cert_der"]))
            # signed by the CA's delegated responder, whose certificate the response carries
            (responder,) = resp.certificates
            responder.verify_directly_issued_by(ca)
            key = responder.public_key()
            assert resp.serial_number == int(row["serial"], 16)
            assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(
                    resp.signature,
                    resp.tbs_response_bytes,
                    padding.PKCS1v15(),
                    resp.signature_hash_algorithm,
                )
            else:
                assert isinstance(key, ec.EllipticCurvePublicKey)
                key.verify(
                    resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm)
                )
        if stats.errors or stored != n:
            raise SystemExit(
                f"pre-signing incomplete: {stored}/{n} stored, {stats.errors} "
                f"errors {stats.error_kinds}"
            )
        return {
            "responses": stats.signed,
            "seconds": stats.seconds,
            "stored": stored,
            "sample_verified": len(sample),
        }
    finally:
        await client.close()
        await pool.close()


def bench(
    key: str, workers: int, seconds: float, n: int, root: Path, cluster, crl: bool, crl_entries: int
) -> dict:
    import uvloop

    from tests.support.signer_proc import running_signer, socket_of
    from tests.support.softhsm import make_ca

    config = make_ca(root / key, KEY_TYPES[key])
    dsn = cluster.create_database(f"bench_ocsp_{key}")
    issuer = uvloop.run(seed(dsn, config, n))
    print(f"{key}: seeded {n} certificates", flush=True)
    raw1 = raw_rate(config, workers, seconds)
    print(f"{key}: raw C_Sign with {workers} workers: {raw1:,.0f}/s", flush=True)
    extra: dict = {}
    with running_signer(config, workers=workers):
        out = uvloop.run(presign(dsn, socket_of(config), issuer, n))
        rate = out["responses"] / out["seconds"]
        print(
            f"{key}: pre-signed and stored {out['responses']} OCSP responses in "
            f"{out['seconds']:.2f}s = {rate:,.0f}/s (sample of {out['sample_verified']} "
            f"verified here)",
            flush=True,
        )
        if crl:
            from bench.crl import crl_once

            extra = uvloop.run(crl_once(dsn, socket_of(config), config, issuer, crl_entries))
            print(
                f"{key}: CRL with {extra['crl_entries']} entries in "
                f"{extra['crl_seconds']:.2f}s ({extra['crl_bytes']:,} bytes)",
                flush=True,
            )
    raw2 = raw_rate(config, workers, seconds)
    print(f"{key}: raw C_Sign again: {raw2:,.0f}/s", flush=True)
    raw = (raw1 + raw2) / 2
    return {
        "key": key,
        "responses": out["responses"],
        "responses_per_s": round(rate, 1),
        "raw_sign_per_s": round(raw, 1),
        "ratio": round(rate / raw, 3),
        "workers": workers,
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each raw phase")
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--keys", default="rsa2048,p256")
    parser.add_argument("--crl", action="store_true", help="also time a large CRL")
    parser.add_argument("--crl-entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-ocsp-"))
    _setup_softhsm(root)
    cluster = start_cluster(root)
    try:
        lines = [
            bench(
                k,
                args.workers,
                args.seconds,
                args.certificates,
                root,
                cluster,
                args.crl,
                args.crl_entries,
            )
            for k in args.keys.split(",")
        ]
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
