"""The two database roles and their credentials: an owner that runs the migrations and owns
every table, function and trigger, and the application role the gateway connects as.

The application role gets only the DML the gateway needs (granted by migration 006 and later
ones, which run as the owner); on ``audit_events`` and ``audit_checkpoints`` that is INSERT and
SELECT. It owns nothing, so it can neither ALTER nor DROP the append-only triggers, and it has
no UPDATE, DELETE or TRUNCATE there to begin with. Neither role is a superuser or may create
roles or databases.

``provision`` runs as a superuser (``make run``: the embedded cluster's ``ca`` over ``peer``);
it creates or repairs both roles, gives the database and its ``public`` schema to the owner and
hands over objects a superuser created before the roles existed. Passwords live in files (0600):
the owner's readable by the operator only, the application role's by the gateway's OS user.
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from config.identities import GATEWAY_USER
from config.sections import DatabaseSection

OWNER = DatabaseSection().owner  # the roles' names are the [database] defaults
APP = DatabaseSection().user
GATEWAY_OS_USER = GATEWAY_USER
OWNER_PASSWORD_FILE = "secrets/db-owner.password"  # noqa: S105 -- a path, not a secret
APP_PASSWORD_FILE = "secrets/db-app.password"  # noqa: S105 -- a path, not a secret
_LIMITS = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"


@dataclass(frozen=True)
class Credentials:
    owner_password: str
    app_password: str

    def __repr__(self) -> str:  # never print passwords
        return "Credentials(...)"


def ensure_password_file(path: Path, owner_uid: int | None = None) -> str:
    """The password in ``path``, made (random, 0600) the first time; ``owner_uid`` owns it."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    if owner_uid is not None and os.geteuid() == 0:
        os.chown(path, owner_uid, -1)
    os.chmod(path, 0o600)
    return path.read_text(encoding="utf-8").strip()


def gateway_uid() -> int | None:
    """The gateway's OS user when it exists and we are root (who may hand files over)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(GATEWAY_OS_USER).pw_uid
    except KeyError:
        return None


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    literal = await conn.fetchval("SELECT quote_literal($1)", password)
    verb = "ALTER" if exists else "CREATE"
    # role is one of the two constants above; the password is quoted by the server
    await conn.execute(f"{verb} ROLE {role} LOGIN {_LIMITS} PASSWORD {literal}")


async def _hand_over(conn: asyncpg.Connection) -> None:
    """Objects in ``public`` that someone else owns (a database migrated as the superuser
    before the roles existed) become the owner's; identity sequences follow their tables."""
    rows = await conn.fetch(
        """SELECT format('%I', c.relname) AS name, c.relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             AND pg_get_userbyid(c.relowner) <> $1
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                             AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
           ORDER BY c.relkind DESC""",
        OWNER,
    )
    for row in rows:
        kind = "SEQUENCE" if row["relkind"] == "S" else "TABLE"
        await conn.execute(f"ALTER {kind} {row['name']} OWNER TO {OWNER}")
    funcs = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS sig FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1""",
        OWNER,
    )
    for row in funcs:
        await conn.execute(f"ALTER FUNCTION {row['sig']} OWNER TO {OWNER}")


async def provision(conn: asyncpg.Connection, creds: Credentials) -> None:
    """Create or repair both roles and give the connected database to the owner.

    ``conn`` is a superuser connection to the application's database. Idempotent: the roles'
    passwords are set from ``creds`` every time (the files are the source of truth).
    """
    dbname = await conn.fetchval("SELECT current_database()")
    # the CREATE/ALTER ROLE statements carry passwords: keep them out of the server log
    await conn.execute("SET log_statement = 'none'; SET log_min_error_statement = 'panic'")
    try:
        await _ensure_role(conn, OWNER, creds.owner_password)
        await _ensure_role(conn, APP, creds.app_password)
    finally:
        await conn.execute("RESET log_statement; RESET log_min_error_statement")
    db = await conn.fetchval("SELECT format('%I', $1::text)", dbname)
    await conn.execute(f"ALTER DATABASE {db} OWNER TO {OWNER}")
    await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    await conn.execute(f"GRANT CONNECT ON DATABASE {db} TO {APP}")
    await conn.execute(f"ALTER SCHEMA public OWNER TO {OWNER}")
    await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {APP}")
    await _hand_over(conn)


def credentials_for(config_dir: Path) -> Credentials:
    """Both password files under ``config_dir`` (made the first time): the owner's stays the
    operator's, the application role's goes to the gateway's OS user when there is one."""
    return Credentials(
        owner_password=ensure_password_file(Path(config_dir) / OWNER_PASSWORD_FILE),
        app_password=ensure_password_file(Path(config_dir) / APP_PASSWORD_FILE, gateway_uid()),
    )


def ensure_roles(config_path: Path, superuser_dsn: str) -> Credentials:
    """What ``make run`` calls once the cluster is up: both roles, their password files."""
    import asyncio

    from db.pool import connect

    creds = credentials_for(Path(config_path).resolve().parent)

    async def run() -> None:
        conn = await connect(superuser_dsn)
        try:
            await provision(conn, creds)
        finally:
            await conn.close()

    asyncio.run(run())
    return creds
