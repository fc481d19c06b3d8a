"""The runtime the service users execute: a virtualenv in /opt/hsm-ca/venv, kept current.

The developer's ``.venv`` cannot serve ``ca-signer`` and ``ca-gateway`` under their own users:
its python may be a symlink into a folder only its owner can enter (pyenv under /root, mode
0700), the clone itself may sit in such a folder, and an editable install points back into it.
So, as root, this builds a second virtualenv from Debian's ``/usr/bin/python3`` in a
world-readable place, with the project installed from a copy of its sources (not editable).
The production units (``deploy/systemd/``) run the same binaries.

Kept current by hashes: the dependencies, from the lock file ``requirements/runtime.txt``
(``pip install --require-hashes``, so every file is the locked one; ``make lock`` writes it), are
installed again when the lock changes; the project alone (``--no-deps``, built with the locked
setuptools) when any file of its packages changes. ``bootstrap.sh`` and
``make run`` call ``ensure_runtime()``; it takes a lock, so two runs never install at once.

Usage: ``python3 scripts/runtime.py [--print-bin]``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = Path(os.environ.get("CA_RUNTIME_DIR", "/opt/hsm-ca"))
SYSTEM_PYTHON = Path("/usr/bin/python3")
PACKAGES = ("config", "signer", "gateway", "hsm_config", "db", "admin", "monitoring")
LOCK = Path("requirements") / "runtime.txt"


def venv_bin(root: Path = RUNTIME) -> Path:
    return root / "venv" / "bin"


def _files(repo: Path) -> list[Path]:
    """What goes into the installed package: pyproject.toml and the package folders."""
    out = [repo / "pyproject.toml"]
    for pkg in PACKAGES:
        for path in sorted((repo / pkg).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out.append(path)
    return out


def source_hash(repo: Path = REPO) -> str:
    digest = hashlib.sha256()
    for path in _files(repo):
        digest.update(str(path.relative_to(repo)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _deps_hash(repo: Path) -> str:
    """The dependencies are what the lock says: reinstall them when it changes."""
    return hashlib.sha256((repo / LOCK).read_bytes()).hexdigest()[:16]


def _pip(root: Path, *args: str) -> None:
    proc = subprocess.run(
        [str(venv_bin(root) / "python"), "-m", "pip", "install", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={**os.environ, "PIP_NO_WARN_SCRIPT_LOCATION": "1"},
    )
    if proc.returncode != 0:  # pip's warnings about this machine's indexes only when it fails
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def _copy_sources(repo: Path, dest: Path) -> None:
    """Build from a copy: pip builds in the source folder, which must stay clean."""
    for path in _files(repo):
        target = dest / path.relative_to(repo)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def ensure_runtime(
    repo: Path = REPO, root: Path = RUNTIME, say: Callable[[str], object] = print
) -> Path:
    """Build or update the runtime virtualenv; returns its bin folder. Root only."""
    if os.geteuid() != 0:
        raise PermissionError("the shared runtime is built by root (make run / make test as root)")
    if not SYSTEM_PYTHON.exists():
        raise FileNotFoundError(f"{SYSTEM_PYTHON} is missing (Debian: python3, python3-venv)")
    old_umask = os.umask(0o022)  # every user must be able to read and run what we install
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # noqa: S103 -- the service users run what is in it
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _update(repo, root, say)
    finally:
        os.umask(old_umask)


def _update(repo: Path, root: Path, say: Callable[[str], object]) -> Path:
    want_src = source_hash(repo)
    want_deps = _deps_hash(repo)
    stamp_src = root / "installed-sources"
    stamp_deps = root / "installed-deps"
    have_src = stamp_src.read_text().strip() if stamp_src.exists() else ""
    have_deps = stamp_deps.read_text().strip() if stamp_deps.exists() else ""
    if have_src == want_src and have_deps == want_deps and (venv_bin(root) / "python").exists():
        return venv_bin(root)
    if not (venv_bin(root) / "python").exists():
        say(f"runtime: creating {root / 'venv'} from {SYSTEM_PYTHON}")
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(root / "venv")], check=True)
        have_deps = ""
    with tempfile.TemporaryDirectory(prefix="hsm-ca-src-") as tmp:
        _copy_sources(repo, Path(tmp))
        if have_deps != want_deps:
            say(f"runtime: installing the dependencies ({LOCK})")
            # pip and setuptools come from the lock too: the project builds without isolation
            _pip(root, "--require-hashes", "-r", str(repo / LOCK))
            stamp_deps.write_text(want_deps + "\n")
        say(f"runtime: installing the project from {repo} (sources {want_src})")
        _pip(root, "--no-deps", "--force-reinstall", "--no-build-isolation", tmp)
    stamp_src.write_text(want_src + "\n")
    return venv_bin(root)


def main(argv: list[str]) -> int:
    bin_dir = ensure_runtime(say=lambda m: print(f"bootstrap: {m}", flush=True))
    if "--print-bin" in argv:
        print(bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
