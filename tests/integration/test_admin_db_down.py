"""``ca-admin`` never starts the embedded database behind the operator's back: with the cluster
stopped it says the database is down and exits 1 (the cluster stays stopped); only
``--start-db`` starts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.embedded import Cluster
from db.roles import ensure_roles

BIN = Path(sys.executable).parent


@pytest.fixture
def stopped_cluster() -> Iterator[tuple[Path, Cluster]]:
    """A configuration whose embedded cluster (``<config folder>/pg``) exists but is stopped."""
    root = Path(tempfile.mkdtemp(prefix="ca-admin-"))
    os.chmod(root, 0o755)  # the server may run as the postgres user (tests run as root)
    config = root / "ca.toml"
    config.write_text('[database]\nurl = ""\n')
    cluster = Cluster(root / "pg")
    cluster.init(fast=True)
    cluster.start()  # once, to create the owner and application roles as make run does
    ensure_roles(config, cluster.create_database("ca"))
    cluster.stop()
    try:
        yield config, cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def admin(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [str(BIN / "ca-admin"), "--config", str(config), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_stopped_database_is_reported_not_started(stopped_cluster: tuple[Path, Cluster]) -> None:
    config, cluster = stopped_cluster
    for argv in (("migrate",), ("audit", "verify"), ("unlock-officer", "nobody")):
        out = admin(config, *argv)
        assert out.returncode == 1, (argv, out.stdout, out.stderr)
        assert "the database is down" in out.stderr, out.stderr
        assert "--start-db" in out.stderr and "Traceback" not in out.stderr
        assert not cluster.is_running(), f"ca-admin {' '.join(argv)} started the database"


def test_start_db_starts_it(stopped_cluster: tuple[Path, Cluster]) -> None:
    config, cluster = stopped_cluster
    out = admin(config, "--start-db", "migrate")
    assert out.returncode == 0, out.stderr
    assert cluster.is_running()
    # running now: the same verb works without the flag
    out = admin(config, "audit", "verify")
    assert out.returncode == 0, out.stderr
