"""Numbered SQL migrations (``migrations/NNN_name.sql``), each applied once in its own
transaction. Concurrent starters serialise on an advisory lock; an applied file that changed
afterwards is an error, never silently ignored."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x43414D4947  # "CAMIG"


class MigrationError(Exception):
    """The database schema does not match the migration files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    out = []
    for entry in resources.files("db.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in out]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return out


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply what is missing; return the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        for mig in available():
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:03d}_{mig.name} changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            applied_now.append(mig.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def migrate_pool(pool: asyncpg.Pool) -> list[int]:
    async with pool.acquire() as conn:
        return await migrate(conn)


async def pending(conn: asyncpg.Connection) -> list[int]:
    """Versions not applied yet, read-only: what a gateway that does not migrate checks at
    start (the application role may read ``schema_migrations``, never change the schema)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations") if exists else []
    done = {r["version"]: r["checksum"] for r in rows}
    for mig in available():
        if mig.version in done and done[mig.version] != mig.checksum:
            raise MigrationError(
                f"migration {mig.version:03d}_{mig.name} changed after it was applied"
            )
    return [mig.version for mig in available() if mig.version not in done]
