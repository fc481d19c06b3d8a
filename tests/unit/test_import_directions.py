"""The allowed import directions between the project's packages, read from the source (static).

``config`` <- ``signer`` <- ``hsm_config`` <- ``db`` <- ``gateway`` and ``admin`` (the ``ca-admin``
command line, beside the gateway on top of ``db``): every edge points one way, so
each package can be read (and changed) knowing only the ones it imports. Imports inside
functions and under ``TYPE_CHECKING`` count as much as those at the top: they run too.
The tools at the edge (``scripts``, ``bench``, ``tests``) may import anything, each other too;
nothing of the product imports them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("config", "signer", "hsm_config", "db", "gateway", "admin", "monitoring")
TOOLS = ("scripts", "bench", "tests")
ANY = None  # an edge on which any module of the target package may be imported

# The signer modules that load no pkcs11 (and nothing of the token): what the gateway and
# ca-admin may use of the signer.
SIGNER_FREE = frozenset(
    {
        "signer.protocol",
        "signer.codec",
        "signer.vocabulary",
        "signer.client",
        "signer.errors",
        "signer.checkpoints",
        "signer.tls",
        "signer.role_keys",
    }
)

# (importing package, imported package) -> the modules allowed on that edge (ANY: all of them).
ALLOWED: dict[tuple[str, str], frozenset[str] | None] = {
    ("signer", "config"): ANY,
    ("hsm_config", "config"): ANY,
    ("hsm_config", "signer"): ANY,  # the security officer's ceremonies open the token too
    ("db", "config"): ANY,
    ("db", "signer"): frozenset({"signer.checkpoints", "signer.protocol"}),  # checkpoint checks
    ("gateway", "config"): ANY,
    ("gateway", "db"): ANY,
    ("gateway", "signer"): SIGNER_FREE,
    ("admin", "config"): ANY,
    ("admin", "db"): ANY,
    ("admin", "signer"): SIGNER_FREE,  # the audit key's location, the checkpoint ledger
    ("admin", "hsm_config"): frozenset({"hsm_config.journal"}),  # ca-admin audit import-journal
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every project module a source file imports, wherever the statement is, with its line.

    ``from pkg import name`` imports the module ``pkg.name`` when there is one, else ``pkg``.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield node.lineno, sub if _is_module(sub) else node.module


def edges(root: Path = REPO) -> Iterator[tuple[str, int, str]]:
    """(importing module, line, imported module) across packages, for every project file."""
    for top in (*PRODUCT, *TOOLS):
        for path in sorted((root / top).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            source = _module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for line, target in imported_modules(tree):
                package = target.split(".")[0]
                if package in (*PRODUCT, *TOOLS) and package != top:
                    yield source, line, target


def violations(found: list[tuple[str, int, str]]) -> list[str]:
    bad = []
    for source, line, target in found:
        src_pkg, dst_pkg = source.split(".")[0], target.split(".")[0]
        if src_pkg in TOOLS:  # the benchmarks start daemons with the tests' helpers
            continue
        if (src_pkg, dst_pkg) not in ALLOWED:
            bad.append(f"{source}:{line} imports {target}: {src_pkg} -> {dst_pkg} is not allowed")
            continue
        modules = ALLOWED[(src_pkg, dst_pkg)]
        if modules is not ANY and target not in modules:
            bad.append(f"{source}:{line} imports {target}: only {sorted(modules)} of {dst_pkg}")
    return bad


def package_cycles(pairs: set[tuple[str, str]]) -> list[list[str]]:
    """The cycles of the package graph (depth-first search, each cycle once per start)."""
    graph: dict[str, set[str]] = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                cycles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle from its smallest member
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return cycles


def test_the_table_has_no_cycle() -> None:
    assert package_cycles(set(ALLOWED)) == []


def test_every_import_follows_the_table() -> None:
    found = list(edges())
    assert any(s.startswith("gateway.") and t.startswith("config.") for s, _, t in found)
    assert violations(found) == []


def test_no_cycle_between_packages() -> None:
    pairs = {(s.split(".")[0], t.split(".")[0]) for s, _, t in edges()}
    assert package_cycles(pairs) == []


def test_the_checks_see_what_they_must_refuse(tmp_path: Path) -> None:
    """Imports in a function, a forbidden module on an allowed edge, and a cycle all fail."""
    tree = ast.parse("def f():\n    from signer.hsm.token import TokenHandle\n")
    (target,) = [t for _, t in imported_modules(tree)]
    assert target == "signer.hsm.token"
    assert violations([("gateway.app", 2, target)]) != []
    assert violations([("config.loader", 1, "signer.errors")]) != []
    assert violations([("signer.cli", 1, "tests.support")]) != []
    assert violations([("db.audit", 1, "hsm_config.journal")]) != []  # ca-admin's, not db's
    assert violations([("admin.audit", 1, "signer.hsm.token")]) != []
    assert violations([("admin.audit", 1, "hsm_config.journal")]) == []
    assert violations([("tests.unit.x", 1, "signer.hsm.token")]) == []
    assert package_cycles({("config", "signer"), ("signer", "config")}) == [
        ["config", "signer", "config"]
    ]
