"""The runtime the service users execute: current with the sources, runnable by anyone,
and a real install rather than a pointer back into the clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import runtime  # noqa: E402


def copy_of_sources(dest: Path) -> Path:
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    for pkg in runtime.PACKAGES:
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_the_hash_follows_package_files_only(tmp_path: Path) -> None:
    repo = copy_of_sources(tmp_path)
    first = runtime.source_hash(repo)
    (repo / "signer" / "__pycache__").mkdir(exist_ok=True)
    (repo / "signer" / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    (repo / "README.md").write_text("not part of the package")
    assert runtime.source_hash(repo) == first
    template = repo / "gateway" / "portal" / "templates"
    changed = next(p for p in sorted(template.rglob("*")) if p.is_file())
    changed.write_text(changed.read_text() + "\n")
    assert runtime.source_hash(repo) != first  # templates and static files count too


@pytest.mark.skipif(os.geteuid() != 0, reason="the shared runtime is built by root")
def test_the_runtime_is_current_and_runs_for_other_users() -> None:
    bin_dir = runtime.ensure_runtime(say=lambda _m: None)
    stamp = (runtime.RUNTIME / "installed-sources").read_text().strip()
    assert stamp == runtime.source_hash()
    proc = subprocess.run(
        [str(bin_dir / "python"), "-c", "import signer.cli, gateway.app; print(signer.__file__)"],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(runtime.RUNTIME / "venv" / "lib"))  # not editable
