"""The Python lock files say what pyproject.toml asks for.

Bootstrap installs only from ``requirements/test.txt`` (.venv) and ``requirements/runtime.txt``
(the runtime venv), the project itself with ``--no-deps``. So a requirement added to or changed
in pyproject.toml without ``make lock`` would be silently missing or at a version outside its
range: these tests catch that, and that the runtime runs the versions the tests ran.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
FIX = "run `make lock` and commit requirements/"


def pins(name: str) -> dict[str, str]:
    """Package -> locked version, from one lock file."""
    out = {}
    for line in (REPO / "requirements" / name).read_text().splitlines():
        if m := PIN.match(line):
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def hashed(name: str) -> set[str]:
    """The packages of a lock file that carry at least one hash (pip --require-hashes)."""
    out, current = set(), None
    for line in (REPO / "requirements" / name).read_text().splitlines():
        if m := PIN.match(line):
            current = canonicalize_name(m.group(1))
        elif current and line.strip().startswith("--hash=sha256:"):
            out.add(current)
    return out


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME = [Requirement(r) for r in PROJECT["project"]["dependencies"]]
TEST = [Requirement(r) for r in PROJECT["project"]["optional-dependencies"]["test"]]
BUILD = [Requirement(r) for r in PROJECT["build-system"]["requires"]]


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [("runtime.txt", RUNTIME + BUILD), ("test.txt", RUNTIME + TEST + BUILD)],
)
def test_every_requirement_is_locked_within_its_range(lock: str, wanted: list) -> None:
    locked = pins(lock)
    for req in wanted:
        version = locked.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in requirements/{lock}: {FIX}"
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} has {req.name}=={version}, pyproject.toml asks {req}: {FIX}"
        )


def test_the_runtime_runs_the_versions_the_tests_ran() -> None:
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert runtime, "requirements/runtime.txt pins nothing"
    differ = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert not differ, f"runtime.txt vs test.txt: {differ}: {FIX}"


@pytest.mark.parametrize("lock", ["runtime.txt", "test.txt"])
def test_every_locked_package_has_a_hash(lock: str) -> None:
    assert set(pins(lock)) == hashed(lock), f"requirements/{lock} without hashes: {FIX}"
