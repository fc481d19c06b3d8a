"""Signed audit checkpoints on the real signer daemon (SoftHSM audit key) and PostgreSQL: an
intact log verifies; removing the newest rows, recomputing the chain after an edit and forging
a checkpoint are each detected and named, even when the attacker has the superuser's rights
(triggers disabled) and the hash chain itself verifies again."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from admin import cli
from config.loader import load
from db import audit, checkpoints
from db.pool import connect
from gateway.app import make_app
from gateway.config import GatewayConfig
from gateway.services import audit_checkpoint
from signer.checkpoints import SignedCheckpoint, key_fingerprint, read_ledger
from signer.codec import wire_form
from signer.errors import ErrorKind, SignerError
from signer.protocol import CheckpointRequest, checkpoint_message
from signer.role_keys import AUDIT, load_public_key
from tests.integration import lifecycle
from tests.integration.conftest import Client, register

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
gateway_config = lifecycle.gateway_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process


def ledger_of(config: Path) -> Path:
    return config.parent / "audit" / "checkpoints.jsonl"


async def verify_cli(monkeypatch: pytest.MonkeyPatch, dsn: str, config: Path) -> tuple[int, str]:
    """``ca-admin audit verify`` as the operator runs it (the owner's DSN, the CA config)."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    rc = await asyncio.to_thread(cli.main, ["--config", str(config), "audit", "verify"])
    monkeypatch.undo()
    return rc, out.getvalue()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def superuser(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An attacker with more rights than the gateway: may switch the triggers off."""
    conn = await connect(database_url)
    yield conn
    await conn.close()


async def _events(officer: Client, n: int) -> None:
    for _ in range(n):
        await register(officer)


async def test_checkpoint_is_signed_stored_and_filed(
    officer: Client,
    db_pool: asyncpg.Pool,
    signer: Any,
    ca_config: Path,
    owner_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _events(officer, 4)
    signed = await audit_checkpoint.take(db_pool, signer)
    async with db_pool.acquire() as conn:
        head = await conn.fetchrow("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
        stored = await checkpoints.stored(conn)
    assert (signed.request.last_id, signed.request.last_hash) == (head["id"], bytes(head["hash"]))
    assert signed.request.count == head["id"]
    assert stored[-1] == signed
    # the signer's own file has it too, and the recorded public key verifies it
    assert read_ledger(ledger_of(ca_config))[-1] == signed
    key = load_public_key(AUDIT.public_key_path(load(ca_config, environ={})))
    assert signed.fingerprint == key_fingerprint(key)
    rc, out = await verify_cli(monkeypatch, owner_url, ca_config)
    assert rc == 0, out
    assert "audit chain ok" in out and "audit checkpoints ok: 2 signed checkpoints" in out


async def test_signer_refuses_to_sign_a_lower_or_forked_head(
    db_pool: asyncpg.Pool,
    signer: Any,
    officer: Client,
    ca_config: Path,
) -> None:
    await _events(officer, 1)
    last = (await audit_checkpoint.take(db_pool, signer)).request
    now = int(time.time())
    for bad in (
        CheckpointRequest(last.last_id - 1, last.last_hash, last.count - 1, now),  # truncated
        CheckpointRequest(last.last_id, last.last_hash, last.count - 1, now),  # fewer rows
        CheckpointRequest(last.last_id, bytes(32), last.count, now),  # same id, other hash
        CheckpointRequest(last.last_id, last.last_hash, last.count, last.at - 10),  # older
        CheckpointRequest(last.last_id, last.last_hash, last.count, now + 3600),  # not now
    ):
        with pytest.raises(SignerError) as err:
            await signer.sign_checkpoint(bad)
        assert err.value.kind == ErrorKind.PROFILE_VIOLATION
    # typed fields only: the caller cannot add bytes of its own to what is signed
    (result,) = await signer._call(
        "checkpoint", [{**wire_form(last), "at": now, "message": b"sign me"}], None
    )
    assert result.error is not None and result.error.kind == ErrorKind.BAD_REQUEST
    # the same head again, later, is fine (nothing happened in between)
    again = CheckpointRequest(last.last_id, last.last_hash, last.count, now)
    blob = await signer.sign_checkpoint(again)
    key = load_public_key(AUDIT.public_key_path(load(ca_config, environ={})))
    assert SignedCheckpoint.from_result(again, blob).fingerprint == key_fingerprint(key)


class _Rollback(Exception):
    """Leaves the attacker's transaction undone for the next test."""


async def test_removed_newest_rows_are_detected(
    superuser: asyncpg.Connection,
    db_pool: asyncpg.Pool,
    signer: Any,
    officer: Client,
    ca_config: Path,
) -> None:
    await _events(officer, 3)
    signed = await audit_checkpoint.take(db_pool, signer)
    key = load_public_key(AUDIT.public_key_path(load(ca_config, environ={})))
    with pytest.raises(_Rollback):
        async with superuser.transaction():
            await superuser.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
            await superuser.execute(
                "DELETE FROM audit_events WHERE id > $1", signed.request.last_id - 2
            )
            assert (await audit.verify(superuser)).ok  # the chain alone cannot see it
            _, failures = await checkpoints.check(superuser, key, [("newest", signed)])
            assert [(f.source, f.last_id) for f in failures] == [("newest", signed.request.last_id)]
            assert "is gone" in failures[0].problem
            raise _Rollback


async def test_recomputed_chain_is_detected(
    superuser: asyncpg.Connection,
    db_pool: asyncpg.Pool,
    signer: Any,
    ca_config: Path,
) -> None:
    signed = await audit_checkpoint.take(db_pool, signer)
    key = load_public_key(AUDIT.public_key_path(load(ca_config, environ={})))
    with pytest.raises(_Rollback):
        async with superuser.transaction():
            await superuser.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
            await superuser.execute(
                """UPDATE audit_events SET details = details || '{"edited": true}'
                   WHERE id = 3"""
            )
            await recompute_chain(superuser, from_id=3)
            assert (await audit.verify(superuser)).ok  # the chain verifies again
            _, failures = await checkpoints.check(superuser, key, [("cp", signed)])
            assert len(failures) == 1 and "another hash" in failures[0].problem
            raise _Rollback


async def recompute_chain(conn: asyncpg.Connection, *, from_id: int) -> None:
    """What an attacker with UPDATE rights does after an edit: every later hash anew."""
    prev = bytes(await conn.fetchval("SELECT prev_hash FROM audit_events WHERE id = $1", from_id))
    for ev in await audit.list_events(conn, after_id=from_id - 1, limit=100000):
        digest = audit.row_hash(
            id=ev.id,
            at=ev.at,
            actor=ev.actor,
            action=ev.action,
            target=ev.target,
            details=ev.details,
            prev_hash=prev,
        )
        await conn.execute(
            "UPDATE audit_events SET prev_hash = $2, hash = $3 WHERE id = $1", ev.id, prev, digest
        )
        prev = digest


async def test_forged_checkpoints_are_detected(
    db_pool: asyncpg.Pool,
    signer: Any,
    ca_config: Path,
    owner_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    genuine = await audit_checkpoint.take(db_pool, signer)
    key = load_public_key(AUDIT.public_key_path(load(ca_config, environ={})))
    r = genuine.request
    other = ec.generate_private_key(ec.SECP256R1())
    wrong_key_sig = other.sign(checkpoint_message(r), ec.ECDSA(hashes.SHA256()))
    forged = [
        # another key, honestly named
        SignedCheckpoint(r, key_fingerprint(other.public_key()), wrong_key_sig),
        # another key, claiming to be the audit key
        SignedCheckpoint(r, genuine.fingerprint, wrong_key_sig),
        # the genuine signature with one field altered
        SignedCheckpoint(
            CheckpointRequest(r.last_id, r.last_hash, r.count - 1, r.at),
            genuine.fingerprint,
            genuine.signature,
        ),
    ]
    async with db_pool.acquire() as conn:
        _, failures = await checkpoints.check(
            conn, key, [(f"forged {i}", cp) for i, cp in enumerate(forged)]
        )
    assert [f.source for f in failures] == ["forged 0", "forged 1", "forged 2"]
    assert "another key" in failures[0].problem
    assert all("signature does not verify" in f.problem for f in failures[1:])
    # the gateway's role may INSERT checkpoints: a forged one in the table is named by the CLI
    async with db_pool.acquire() as conn:
        n = len(await checkpoints.stored(conn))
        await checkpoints.store(conn, forged[2])
    rc, out = await verify_cli(monkeypatch, owner_url, ca_config)
    assert rc == 1
    assert f"checkpoint FAILED: database checkpoint {n + 1}, event id {r.last_id}" in out
    assert "signature does not verify" in out


async def test_a_clean_gateway_stop_signs_a_checkpoint(
    db_pool: asyncpg.Pool,
    signer: Any,
    gateway_config: GatewayConfig,
) -> None:
    async with db_pool.acquire() as conn:
        before = len(await checkpoints.stored(conn))
    server = TestServer(
        make_app(gateway_config, db_pool=db_pool, signer_client=signer), host="127.0.0.1"
    )
    await server.start_server()
    await server.close()
    async with db_pool.acquire() as conn:
        assert len(await checkpoints.stored(conn)) == before + 1


async def test_cli_names_the_checkpoint_and_the_file_outlives_the_table(
    superuser: asyncpg.Connection,
    db_pool: asyncpg.Pool,
    signer: Any,
    officer: Client,
    ca_config: Path,
    owner_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Last (it commits): delete the newest rows before the last checkpoint, and even every
    checkpoint row; the signer's file still has them and the CLI says which one failed."""
    await _events(officer, 2)
    signed = await audit_checkpoint.take(db_pool, signer)
    await superuser.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
    await superuser.execute("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER")
    try:
        await superuser.execute("DELETE FROM audit_events WHERE id >= $1", signed.request.last_id)
        await superuser.execute("DELETE FROM audit_checkpoints")
    finally:
        await superuser.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        await superuser.execute("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER")
    rc, out = await verify_cli(monkeypatch, owner_url, ca_config)
    assert rc == 1, out
    assert "audit chain ok" in out  # consecutive ids, intact hashes: only checkpoints see it
    entries = read_ledger(ledger_of(ca_config))
    number = next(i for i, cp in enumerate(entries, 1) if cp == signed)
    assert (
        f"checkpoint FAILED: file checkpoint {number} ({ledger_of(ca_config)}), "
        f"event id {signed.request.last_id}: event {signed.request.last_id} is gone"
    ) in out
