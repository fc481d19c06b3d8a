"""``ca-admin audit``: verify the hash chain and the signed checkpoints, import the journal.

``verify`` walks the chain, then checks every signed checkpoint in the database and in the
signer's checkpoint file against the audit public key; ``import-journal`` copies the key
ceremonies' journal into the hash-chained log, each entry once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import asyncpg

from admin.database import AdminError, run_as_owner
from config.loader import ConfigError, load
from db import audit, checkpoints
from hsm_config import journal
from signer import role_keys
from signer.checkpoints import read_ledger


def _checkpoint_sources(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The audit public key and the signer's checkpoint file: options, else the config."""
    key = Path(args.public_key) if args.public_key else None
    ledger = Path(args.checkpoints) if args.checkpoints else None
    if key is None or ledger is None:
        try:
            cfg = load(args.config)
        except ConfigError:
            return key, ledger
        key = key or role_keys.AUDIT.public_key_path(cfg)
        ledger = ledger or cfg.resolve(
            str(cfg.section("signer").get("audit_checkpoint_file") or "audit/checkpoints.jsonl")
        )
    return key, ledger


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify` (exit 1 on a broken chain or a failed checkpoint), or `import-journal`."""
    if args.action == "import-journal":
        return cmd_import_journal(args)
    key_path, ledger_path = _checkpoint_sources(args)

    async def work(conn: asyncpg.Connection) -> int:
        rc = 0
        result = await audit.verify(conn)
        if result.ok:
            print(f"audit chain ok: {result.checked} events")
        else:
            print(
                f"audit chain BROKEN at event {result.first_broken_id}: {result.problem} "
                f"({result.checked} events before it verified)"
            )
            rc = 1
        sources = [
            (f"database checkpoint {i}", cp)
            for i, cp in enumerate(await checkpoints.stored(conn), 1)
        ]
        in_db = len(sources)
        if ledger_path is not None and ledger_path.exists():
            try:
                entries = read_ledger(ledger_path)
            except ValueError as exc:
                raise AdminError(str(exc)) from exc
            sources += [
                (f"file checkpoint {i} ({ledger_path})", cp) for i, cp in enumerate(entries, 1)
            ]
        if not sources:
            print(
                "WARNING: no signed audit checkpoints to check (the newest rows could be "
                "removed unnoticed)"
            )
            return rc
        if key_path is None or not key_path.exists():
            raise AdminError(
                f"the audit public key {key_path} is missing: checkpoints cannot "
                "be verified (ca-keys audit-key records it)"
            )
        checked, failures = await checkpoints.check(
            conn, role_keys.load_public_key(key_path), sources
        )
        for f in failures:
            print(f"checkpoint FAILED: {f.source}, event id {f.last_id}: {f.problem}")
        if failures:
            return 1
        newest = max(cp.request.last_id for _, cp in sources)
        print(
            f"audit checkpoints ok: {checked} signed checkpoints ({in_db} in the database, "
            f"{checked - in_db} in {ledger_path}), newest at event {newest}"
        )
        return rc

    return run_as_owner(args, work)


def cmd_import_journal(args: argparse.Namespace) -> int:
    """Copy new key-ceremony journal entries into the audit log, each exactly once."""
    path = Path(args.path) if args.path else journal.journal_path(load(args.config))
    try:
        entries = journal.read(path)
    except ValueError as exc:
        raise AdminError(str(exc)) from exc

    async def work(conn: asyncpg.Connection) -> int:
        imported = 0
        async with conn.transaction():
            known = {
                row["jid"]
                for row in await conn.fetch(
                    "SELECT details->>'journal_id' AS jid FROM audit_events "
                    "WHERE details ? 'journal_id'"
                )
            }
            for entry in entries:
                if entry["journal_id"] in known:
                    continue
                details = dict(entry.get("details") or {})
                details["journal_id"] = entry["journal_id"]
                details["recorded_at"] = entry["at"]
                await audit.append(
                    conn,
                    actor=str(entry.get("actor", "security-officer")),
                    action=str(entry["action"]),
                    target=str(entry.get("target", "")),
                    details=details,
                )
                imported += 1
        print(f"imported {imported} ceremony journal entries from {path}")
        return 0

    return run_as_owner(args, work)
