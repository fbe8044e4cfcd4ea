"""The third-party backend of docs/backends/writing-a-backend.md: the page
shows the example files unchanged, and they pass the whole contract suite in
processes of their own (pytest, and a plain script), exactly as a backend
author runs them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import stem
from stem.testing import all_checks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_backend"
FILES = ["acme_backend.py", "test_acme_backend.py", "test_acme_trio.py", "run_suite.py"]
DOC = ROOT / "docs" / "backends" / "writing-a-backend.md"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "acme_backend", EXAMPLE / "acme_backend.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", FILES)
def test_the_page_shows_the_example_file_unchanged(name: str) -> None:
    """writing-a-backend.md holds each example file whole, as a code block."""
    code = (EXAMPLE / name).read_text()
    assert f"```python\n{code}```\n" in DOC.read_text()


def test_the_page_states_the_suite_outcome() -> None:
    """The page's sample output counts every check but the skipped one."""
    assert f"{len(all_checks()) - 1} passed, 1 skipped" in DOC.read_text()


@pytest.mark.slow
def test_the_example_backend_passes_the_suite_through_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    """In a fresh pytest process, every check passes against the example
    backend except the broadcast one, which skips with its reason printed;
    the pytest-trio example passes too."""
    for name in FILES:
        shutil.copy(EXAMPLE / name, pytester.path / name)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    # Every check but the broadcast one, and test_acme_trio.py's one test.
    result.assert_outcomes(passed=len(all_checks()), skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*backend 'acme' lacks capability 'broadcast'*"]
    )


@pytest.mark.slow
def test_the_example_script_runs_the_suite_without_pytest(tmp_path: Path) -> None:
    """run_suite.py runs every check, reporting the broadcast one as skipped
    (stem.testing.CheckSkipped) and the others ok."""
    for name in ("acme_backend.py", "run_suite.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.run(
        [sys.executable, "run_suite.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ok = [line for line in lines if line.endswith(": ok")]
    assert len(ok) == len(all_checks()) - 1
    assert "broadcast_fan_out: skipped (backend 'acme' lacks capability" in (
        proc.stdout
    )


async def test_the_example_backend_runs_tasks() -> None:
    """A client on the example backend runs a task to its result."""
    acme = _load_example()

    @stem.task("hello")
    async def hello(ctx: stem.TaskContext, args: dict[str, str]) -> str:
        return f"hello {args['name']}"

    async with acme.open_acme_backend() as backend:
        async with stem.Client(backend=backend, tasks=[hello]) as client:
            async with client.worker(concurrency=2):
                task_id = await client.enqueue("hello", args={"name": "acme"})
                result = await client.wait_for(task_id, timeout=10)
    assert result.state is stem.TaskState.SUCCEEDED
    assert result.value == "hello acme"
