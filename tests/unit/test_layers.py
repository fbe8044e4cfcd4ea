"""The layers of the code: one import package, imports one way, one owner
for each piece of state (see docs/architecture.md)."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import stem

ROOT = pathlib.Path(stem.__file__).parent

#: Imports that may stay inside a function: optional drivers and the modules
#: that need them, loaded only when the feature is used.
OPTIONAL = {
    "trio_parallel",
    "pytest",
    "stem._otel",
    "stem._prometheus",
    "stem._metrics",
    "cryptography.hazmat.primitives",
    "cryptography.hazmat.primitives.asymmetric",
}


def _modules() -> list[pathlib.Path]:
    return sorted(ROOT.rglob("*.py"))


def _absolute(path: pathlib.Path, node: ast.ImportFrom | ast.Import) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name
    if not node.level:
        return node.module or ""
    package = path.relative_to(ROOT.parent).with_suffix("").parts[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def test_no_import_hides_inside_a_function() -> None:
    """Only optional drivers are imported inside functions; every other import
    is at module level, so a cycle cannot hide."""
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    name = _absolute(path, sub)
                    if name not in OPTIONAL:
                        found.append(
                            f"{path.relative_to(ROOT.parent)}:{sub.lineno} {name}"
                        )
    assert found == []


def _private_reads(path: pathlib.Path, owners: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    hits = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            value = node.value
            name = (
                value.id
                if isinstance(value, ast.Name)
                else value.attr
                if isinstance(value, ast.Attribute)
                else None
            )
            if name in owners:
                hits.append(f"{path.name}:{node.lineno} {name}.{node.attr}")
    return hits


def test_nobody_reaches_into_the_client_the_app_or_the_worker() -> None:
    """Private members of the client, the app and the worker are used only in
    their own modules (actors get a Node; tasks are looked up with
    app.find_task; the worker changes its own state)."""
    own = {
        "_client.py": {"client"},
        "_app.py": {"app"},
        "_worker.py": {"worker"},
    }
    found = []
    for path in _modules():
        owners = {"client", "app", "worker", "_client", "node"} - own.get(
            path.name, set()
        )
        found.extend(_private_reads(path, owners))
    assert found == []


def test_the_actors_never_hold_the_client() -> None:
    """No module of stem.actors names stem.Client."""
    for path in sorted((ROOT / "actors").glob("*.py")):
        text = path.read_text()
        assert "stem._client" not in text, path.name
        assert "Client" not in {
            n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)
        }, path.name


def test_the_import_contracts_hold() -> None:
    """import-linter's contracts (pyproject.toml) are kept: the domain, the
    runtime and the backends import one way, and backends are independent."""
    lint_imports = pathlib.Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
