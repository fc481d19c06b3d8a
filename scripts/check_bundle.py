"""Check that the committed browser bundle is what ``web/`` builds.

The bundle (``portal.js``, ``portal-legacy.js``, ``operator.js`` and the licence text and
stylesheet written beside them) is committed so that a checkout runs without Node. A committed
build output can go stale (``web/src`` changed, the bundle not rebuilt) or be edited by hand,
and nothing else would notice. So ``make test`` runs this before the suite: it copies ``web/``
(without ``node_modules``) into a temporary folder, installs the locked packages there with
``npm ci`` (the pinned esbuild among them), builds twice into two more temporary folders, and
fails

- when the two builds differ: the build is not deterministic, so no comparison can be trusted;
- when a committed file differs from the rebuild or is missing: it names each one and the
  command that rebuilds them (``make bundle``).

Nothing in the working tree is written. Usage: ``python scripts/check_bundle.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
FIX = "make bundle   (cd web && npm ci && node build.mjs), then commit the rebuilt files"


def _run(cmd: list[str], cwd: Path) -> None:
    """Run a build step quietly; its output is shown only when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout}{proc.stderr}")


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root``, by path relative to it, with its SHA-256."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def rebuild(tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Install web/'s locked packages into a copy under ``tmp`` and build it twice."""
    web = tmp / "web"
    shutil.copytree(WEB, web, ignore=shutil.ignore_patterns("node_modules"))
    _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], web)
    builds = []
    for name in ("first", "second"):
        _run(["node", "build.mjs", str(tmp / name)], web)
        builds.append(_tree(tmp / name))
    return builds[0], builds[1]


def compare(built: dict[str, str], repo: Path = REPO) -> list[str]:
    """The committed files that differ from the rebuild, with why."""
    problems = []
    for rel, digest in built.items():
        path = repo / rel
        if not path.is_file():
            problems.append(f"{rel}: missing (the build writes it)")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{rel}: differs from a rebuild of web/")
    return problems


def main() -> int:
    if shutil.which("npm") is None or shutil.which("node") is None:
        print("check-bundle: node and npm are needed (Debian: nodejs, npm)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hsm-ca-bundle-") as tmp:
        first, second = rebuild(Path(tmp))
    if first != second:
        changed = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
        print(f"check-bundle: two builds of web/ differ: {', '.join(changed)}", file=sys.stderr)
        return 1
    problems = compare(first)
    if problems:
        print("check-bundle: the committed bundle is not what web/ builds:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print(f"fix: {FIX}", file=sys.stderr)
        return 1
    print(f"check-bundle: {len(first)} bundle files match a rebuild of web/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
