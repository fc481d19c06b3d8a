"""A private PostgreSQL cluster in one folder: initdb, start, stop, create databases.

``make run`` and the integration tests use this so that no system service is needed. The
server listens only on a Unix socket inside the folder (``listen_addresses = ''``).

Authentication, not the folder, decides who is who: the socket is reachable by local users (so
that the gateway's own OS user can connect), the bootstrap superuser ``ca`` only by ``peer``
authentication from the operator's OS user (the one that created the cluster: root in CI),
every other role only with its SCRAM-SHA-256 password (``db/roles.py`` creates the owner and
the application role and their password files). ``pg_hba.conf`` and ``pg_ident.conf`` are
rewritten at every start, so a cluster made before this (with ``trust``) is switched over.
PostgreSQL refuses to run as root, so when we are root the server runs as the ``postgres``
system user, which then owns the folder.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "ca"
DEFAULT_DB = "ca"
PORT = 5432  # only names the socket file; there is no TCP listener
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

FAST_SETTINGS = {  # for throw-away test clusters only: durability is not needed there
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class EmbeddedError(Exception):
    """The local cluster could not be created, started or stopped."""


def find_bindir() -> Path:
    """PostgreSQL server binaries: ``$PG_BINDIR`` or the newest /usr/lib/postgresql/*/bin."""
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise EmbeddedError(
        "PostgreSQL server binaries not found (install postgresql or set PG_BINDIR)"
    )


@dataclass(frozen=True)
class Cluster:
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = DEFAULT_DB, user: str = SUPERUSER) -> str:
        """A DSN without password: ``peer`` for the superuser, a password kwarg for others."""
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{quote(user, safe='')}@/{dbname}?host={host}&port={PORT}"

    # -- running the binaries --------------------------------------------------------------

    def _server_user(self) -> str | None:
        """The OS user the server runs as: ``postgres`` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise EmbeddedError("running as root needs a 'postgres' system user") from exc
        return "postgres"

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._server_user()
        kwargs: dict[str, object] = {}
        if user:
            kwargs = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd="/",
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if check and proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout
            raise EmbeddedError(f"{Path(args[0]).name} failed: {detail}")
        return proc

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        user = self._server_user()
        # reachable (not listable) by every local user: authentication decides, see above
        for d in (self.root, self.socket_dir):
            os.chmod(d, 0o711)  # noqa: S103 -- search only; the socket checks passwords
            if user:
                pw = pwd.getpwnam(user)
                os.chown(d, pw.pw_uid, pw.pw_gid)
        if user:  # the server user must be able to reach the folder
            parent = self.root.resolve().parent
            while parent != parent.parent:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise EmbeddedError(f"{parent} is not searchable by the postgres user")
                parent = parent.parent

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self, *, fast: bool = False) -> None:
        """Create the cluster once; a second call is a no-op."""
        self._prepare_dirs()
        if self.initialised:
            return
        bindir = find_bindir()
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=reject",
                "--auth-host=reject",
            ]
        )
        settings = {
            "listen_addresses": "''",
            "port": str(PORT),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0777",
            "password_encryption": "'scram-sha-256'",
            "max_connections": "100",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
        }
        if fast:
            settings.update(FAST_SETTINGS)
        with open(self.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")
        self._write_auth()

    def _write_auth(self) -> None:
        """``peer`` for the superuser from the operator's OS user only, SCRAM for the rest."""
        operator = pwd.getpwuid(os.geteuid()).pw_name
        server = self._server_user()
        files = {
            "pg_hba.conf": (
                "# written by db/embedded.py at every start; edits are lost\n"
                "# TYPE  DATABASE  USER  METHOD\n"
                f"local   all       {SUPERUSER}    peer map=operator\n"
                # streaming a standby (pg_basebackup -R): the superuser again, by peer only
                f"local   replication  {SUPERUSER}  peer map=operator\n"
                "local   all       all   scram-sha-256\n"
            ),
            "pg_ident.conf": (
                "# written by db/embedded.py: the OS users allowed to be the superuser (the\n"
                "# operator, and the server's own user, which owns the data folder anyway)\n"
                f"operator  {operator}  {SUPERUSER}\n"
                + (f"operator  {server}  {SUPERUSER}\n" if server and server != operator else "")
            ),
        }
        user = self._server_user()
        for name, text in files.items():
            path = self.data_dir / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            if user:
                pw = pwd.getpwnam(user)
                os.chown(path, pw.pw_uid, pw.pw_gid)

    def is_running(self) -> bool:
        if not self.initialised:
            return False
        proc = self._run(
            [str(find_bindir() / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False
        )
        return proc.returncode == 0

    def start(self) -> None:
        if self.is_running():
            return
        self._prepare_dirs()
        self._write_auth()
        self._set_socket_permissions()
        self._run(
            [
                str(find_bindir() / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
            ]
        )

    def _set_socket_permissions(self) -> None:
        """Clusters made before roles had passwords kept their socket to the owner (0700)."""
        conf = self.data_dir / "postgresql.auto.conf"
        text = conf.read_text(encoding="utf-8")
        fixed = text.replace("unix_socket_permissions = 0700", "unix_socket_permissions = 0777")
        if "password_encryption" not in fixed:
            fixed += "password_encryption = 'scram-sha-256'\n"
        if fixed != text:
            conf.write_text(fixed, encoding="utf-8")

    def stop(self) -> None:
        if not self.is_running():
            return
        self._run(
            [str(find_bindir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
        )

    def _psql(self, sql: str, dbname: str = "postgres") -> str:
        proc = subprocess.run(
            [
                str(find_bindir() / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(PORT),
                "-U",
                SUPERUSER,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise EmbeddedError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; return its DSN."""
        if not _NAME.match(name):
            raise EmbeddedError(f"invalid database name {name!r}")
        # name is checked against _NAME above
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if not exists:
            self._psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        if not _NAME.match(name):
            raise EmbeddedError(f"invalid database name {name!r}")
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_running(root: Path, *, dbname: str = DEFAULT_DB, fast: bool = False) -> str:
    """Initialise (first time) and start the cluster under ``root``; return ``dbname``'s DSN."""
    cluster = Cluster(root)
    cluster.init(fast=fast)
    cluster.start()
    return cluster.create_database(dbname)
