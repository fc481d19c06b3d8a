"""Database roles: from the gateway's OS identity only the application role can connect, and
that role cannot rewrite the audit log or touch its triggers; the gateway runs with it alone.

PostgreSQL itself refuses here (authentication, privileges, ownership): each assertion names
the error class PostgreSQL raises, so a grant or an ``hba`` line too many fails the test.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from db import audit, roles
from db.embedded import PORT, Cluster, find_bindir
from db.migrate import MigrationError, migrate
from db.pool import connect, create_pool
from gateway.app import make_app
from gateway.config import GatewayConfig
from tests.integration.conftest import StubSigner, provision_database, role_dsn

pytestmark = pytest.mark.asyncio(loop_scope="module")

GATEWAY_USER = "ca-gateway"


@pytest.fixture(scope="module")
def gateway_os_user() -> pwd.struct_passwd:
    """The gateway's system user (created the way the deployment creates it, if missing)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as the gateway's OS user")
    try:
        return pwd.getpwnam(GATEWAY_USER)
    except KeyError:
        pass
    if subprocess.run(["getent", "group", GATEWAY_USER], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", GATEWAY_USER], check=True)
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--gid",
            GATEWAY_USER,
            GATEWAY_USER,
        ],
        check=True,
    )
    return pwd.getpwnam(GATEWAY_USER)


def _dbname(dsn: str) -> str:
    return dsn.split("@/", 1)[1].split("?", 1)[0]


def psql_as(
    user: pwd.struct_passwd, cluster: Cluster, dsn: str, role: str, password: str | None
) -> subprocess.CompletedProcess[str]:
    """``SELECT current_user`` through libpq's psql, run under ``user``'s uid and gid only;
    the password (if any) in the environment, never on the command line."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [
            str(find_bindir() / "psql"),
            "-X",
            "-A",
            "-t",
            "-w",
            "-h",
            str(cluster.socket_dir),
            "-p",
            str(PORT),
            "-U",
            role,
            "-d",
            _dbname(dsn),
            "-c",
            "SELECT current_user",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=30,
        check=False,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
    )


async def test_gateway_identity_connects_only_as_the_application_role(
    gateway_os_user: pwd.struct_passwd,
    pg_cluster: Cluster,
    database_url: str,
    db_credentials: roles.Credentials,
) -> None:
    # the control: the gateway's user with the application role's password gets in
    ok = psql_as(gateway_os_user, pg_cluster, database_url, roles.APP, db_credentials.app_password)
    assert (ok.returncode, ok.stdout.strip()) == (0, roles.APP), ok.stderr

    conn = await connect(database_url)
    try:
        superusers = [
            r["rolname"]
            for r in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolsuper AND rolcanlogin")
        ]
        attrs = await conn.fetch(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname = ANY($1)",
            [roles.OWNER, roles.APP],
        )
    finally:
        await conn.close()
    assert superusers, "the cluster has a superuser to try"
    assert {r["rolname"] for r in attrs} == {roles.OWNER, roles.APP}
    assert not any(
        r["rolsuper"] or r["rolcreaterole"] or r["rolcreatedb"] or r["rolbypassrls"] for r in attrs
    )
    # every superuser: with no password, with the gateway's password, with a guess
    for role in superusers:
        for password in (None, db_credentials.app_password, "ca"):
            r = psql_as(gateway_os_user, pg_cluster, database_url, role, password)
            assert r.returncode != 0, f"the gateway's user became superuser {role}"
            assert "authentication failed" in r.stderr, r.stderr
    # the owner: no password, the gateway's own password, a wrong one
    for password in (None, db_credentials.app_password, secrets.token_hex(8)):
        r = psql_as(gateway_os_user, pg_cluster, database_url, roles.OWNER, password)
        assert r.returncode != 0, "the gateway's user connected as the owner"
        assert "authentication failed" in r.stderr or "no password supplied" in r.stderr, r.stderr


async def test_application_role_cannot_rewrite_the_audit_log(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == roles.APP
        async with conn.transaction():  # INSERT and SELECT are what it has
            event = await audit.append(conn, actor="test", action="role_check")
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE id = $1", event.id)

        for table in ("audit_events", "audit_checkpoints"):
            for sql in (
                f"UPDATE {table} SET last_id = 0"
                if table == "audit_checkpoints"
                else f"UPDATE {table} SET actor = 'x'",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
        for sql in (
            "DROP TRIGGER audit_events_no_update ON audit_events",
            "DROP TRIGGER audit_events_no_truncate ON audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
            "ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_checkpoints_no_update ON audit_checkpoints",
            "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$",
            "DROP TABLE audit_events",
            "ALTER TABLE audit_events OWNER TO ca_app",
            "CREATE TABLE audit_copy (id bigint)",
            "SET session_replication_role = replica",  # which would skip the triggers
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        owners = await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        )
        assert {r["owner"] for r in owners} == {roles.OWNER}


async def test_gateway_refuses_a_schema_it_would_have_to_migrate(
    pg_cluster: Cluster,
    db_credentials: roles.Credentials,
) -> None:
    """A database the owner has not migrated: the gateway (application role, migrate_on_start
    off) refuses to start; asked to migrate anyway it lacks the rights."""
    name = f"t_unmigrated_{secrets.token_hex(3)}"
    dsn = pg_cluster.create_database(name)
    try:
        conn = await connect(dsn)
        try:
            await roles.provision(conn, db_credentials)
        finally:
            await conn.close()
        app_dsn = role_dsn(dsn, roles.APP, db_credentials.app_password)
        pool = await create_pool(app_dsn, min_size=1, max_size=2)
        try:
            for migrate_on_start, error in (
                (False, MigrationError),
                (True, asyncpg.InsufficientPrivilegeError),
            ):
                config = GatewayConfig(
                    captcha=False, database_url=app_dsn, migrate_on_start=migrate_on_start
                )
                server = TestServer(
                    make_app(config, db_pool=pool, signer_client=StubSigner()), host="127.0.0.1"
                )
                with pytest.raises(error):
                    await server.start_server()
                await server.close()
        finally:
            await pool.close()
        # once the owner has migrated, the same gateway starts
        await provision_database(dsn, db_credentials)
        pool = await create_pool(app_dsn, min_size=1, max_size=2)
        try:
            server = TestServer(
                make_app(
                    GatewayConfig(captcha=False, database_url=app_dsn),
                    db_pool=pool,
                    signer_client=StubSigner(),
                ),
                host="127.0.0.1",
            )
            await server.start_server()
            await server.close()
        finally:
            await pool.close()
    finally:
        pg_cluster.drop_database(name)


async def test_password_files_are_private(
    tmp_path: Path, gateway_os_user: pwd.struct_passwd
) -> None:
    """``make run``'s credentials: the owner's file stays root's, the application role's goes
    to the gateway's user; both 0600, both kept on the next run."""
    creds = roles.credentials_for(tmp_path)
    owner_file = tmp_path / roles.OWNER_PASSWORD_FILE
    app_file = tmp_path / roles.APP_PASSWORD_FILE
    for path, uid in ((owner_file, 0), (app_file, gateway_os_user.pw_uid)):
        st = path.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, uid)
    assert roles.credentials_for(tmp_path) == creds
    shutil.rmtree(tmp_path / "secrets")


async def test_a_database_migrated_by_the_superuser_is_handed_to_the_owner(
    pg_cluster: Cluster, db_credentials: roles.Credentials
) -> None:
    """A ``var/`` from before the roles: the superuser owned everything. Provisioning gives
    every table, sequence and function to the owner, and the owner can migrate on."""
    name = f"t_handover_{secrets.token_hex(3)}"
    dsn = pg_cluster.create_database(name)
    try:
        conn = await connect(dsn)
        try:
            await migrate(conn)  # as the superuser, as make run did before
            await roles.provision(conn, db_credentials)
            owners = await conn.fetch(
                """SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
                   UNION SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p
                   JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"""
            )
        finally:
            await conn.close()
        assert {r["owner"] for r in owners} == {roles.OWNER}
        owner = await connect(role_dsn(dsn, roles.OWNER, db_credentials.owner_password))
        try:
            assert await migrate(owner) == []
            await owner.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")  # it may
            await owner.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        finally:
            await owner.close()
    finally:
        pg_cluster.drop_database(name)
