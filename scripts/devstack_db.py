"""Database helpers for ``make run`` (called by scripts/devstack.py).

``start_database(var_dir)`` starts (creating it the first time) the embedded cluster under
``var_dir/pg`` and returns its DSN and a stop function; ``DATABASE_URL`` wins when set
(``config.sections.database_url``, the rule the gateway and ca-admin follow).
``ensure_first_officer(config_path)`` creates the RA officer ``ra-admin`` with a random
password the first time, keeps the password in ``var/secrets/ra-admin.password`` (0600) and
returns (login, password) — the stored pair on later runs, None if the officer exists but its
password file is gone. It is made by ``admin.officers.add_officer``, as ``ca-admin create-officer``
makes one, with a password from ``gateway.services.passwords.generate_password``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.sections import database_url  # noqa: E402
from db.embedded import Cluster, ensure_running  # noqa: E402
from gateway.services.passwords import generate_password  # noqa: E402

if TYPE_CHECKING:
    from admin.database import Target

FIRST_OFFICER = "ra-admin"


def start_database(var_dir: Path) -> tuple[str, Callable[[], None]]:
    env = database_url()
    if env:
        return env, lambda: None
    cluster = Cluster(Path(var_dir) / "pg")
    was_running = cluster.is_running()
    dsn = ensure_running(cluster.root)

    def stop() -> None:
        if not was_running:  # leave a cluster someone else started alone
            cluster.stop()

    return dsn, stop


def ensure_first_officer(config_path: Path) -> tuple[str, str] | None:
    config_path = Path(config_path).resolve()
    secret_file = config_path.parent / "secrets" / f"{FIRST_OFFICER}.password"
    if secret_file.exists():
        return FIRST_OFFICER, secret_file.read_text(encoding="utf-8").strip()
    password = generate_password(16)
    from admin.database import owner_target

    created = asyncio.run(_create_officer(owner_target(config_path), password))
    if not created:
        return None
    secret_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    return FIRST_OFFICER, password


async def _create_officer(target: Target, password: str) -> bool:
    """The first officer, made as ``ca-admin create-officer --can-unlock`` makes one (the first
    officer may unlock others: a lockout must not stop the RA); False if it exists."""
    import asyncpg
    from argon2 import PasswordHasher

    from admin.officers import add_officer
    from db.migrate import migrate
    from db.pool import connect
    from db.queries import officers

    password_hash = PasswordHasher().hash(password)
    conn = await connect(target.dsn, password=target.password)  # as the owner role
    try:
        await migrate(conn)
        if await officers.by_login(conn, FIRST_OFFICER) is not None:
            return False
        await add_officer(conn, FIRST_OFFICER, password_hash, can_unlock=True, actor="devstack")
        return True
    except asyncpg.UniqueViolationError:
        return False
    finally:
        await conn.close()
