"""The distribution installs one import package, ``stem`` (issue 14).

Earlier versions installed ``actors`` and ``adapters`` as top-level names
too, and a user project with its own ``adapters/`` or ``actors/`` package
broke. These tests build the wheel and run a real ``stem worker`` inside
such a project.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import trio

import stem
from tests.e2e_app import stop_process

ROOT = Path(__file__).resolve().parents[2]


def _top_level_entries(wheel: Path) -> set[str]:
    """What a wheel puts at the top of site-packages, outside its
    ``*.dist-info`` and ``*.data``: package directories, modules, ``.pth``
    files."""
    with zipfile.ZipFile(wheel) as archive:
        firsts = {PurePosixPath(entry).parts[0] for entry in archive.namelist()}
    return {name for name in firsts if not name.endswith((".dist-info", ".data"))}


@pytest.mark.slow
def test_wheel_installs_only_the_stem_package(tmp_path: Path) -> None:
    """The built wheel holds exactly one top-level import name, ``stem``, with
    the runtime and the backends inside it."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
        + ["-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("trio_stem-*.whl")
    assert _top_level_entries(wheel) == {"stem"}
    with zipfile.ZipFile(wheel) as archive:
        entries = set(archive.namelist())
        for module in (
            "stem/__init__.py",
            "stem/actors/__init__.py",
            "stem/adapters/__init__.py",
            "stem/adapters/memory/__init__.py",
            "stem/adapters/sqlite/__init__.py",
            "stem/adapters/redis/__init__.py",
            "stem/adapters/postgres/__init__.py",
        ):
            assert module in entries, f"{module} is missing from the wheel"
        top_level = [e for e in entries if e.endswith(".dist-info/top_level.txt")]
        for name in top_level:
            listed = archive.read(name).decode().split()
            assert listed == ["stem"], f"{name} lists {listed}"


#: The throwaway project: its own ``adapters`` and ``actors`` packages (with
#: names unrelated to Stem's, so Stem importing them would fail) and an app
#: whose task uses both.
PROJECT = {
    "adapters/__init__.py": '''
        """This project's adapters (payment gateways), nothing to do with Stem."""
        GATEWAY = "project-gateway"
    ''',
    "actors/__init__.py": '''
        """This project's actors (people in a film), nothing to do with Stem."""
        def billing(name: str) -> str:
            return f"starring {name}"
    ''',
    "myapp.py": """
        import stem
        from actors import billing
        from adapters import GATEWAY


        @stem.task("project.greet")
        async def greet(ctx: stem.TaskContext, args: dict) -> str:
            return f"{billing(args['name'])} via {GATEWAY}"


        app = stem.App(tasks=[greet])
    """,
}


def _write_project(root: Path) -> None:
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def _stem_command() -> list[str]:
    """The ``stem`` console script installed beside this interpreter (or the
    module, where no script is installed)."""
    script = Path(sys.executable).with_name("stem")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "stem.cli"]


async def _fail_if_exits(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Raise (with the worker's log) as soon as the worker process ends."""
    while proc.poll() is None:
        await trio.sleep(0.1)
    raise AssertionError(
        f"stem worker exited with {proc.returncode}:\n{log.read_text()}"
    )


@pytest.mark.slow
async def test_worker_runs_in_a_project_with_its_own_adapters_and_actors(
    tmp_path: Path,
) -> None:
    """`stem worker` started in a project that has its own top-level
    ``adapters`` and ``actors`` packages runs the project's task (which uses
    them) and exits 0 on SIGTERM."""
    project = tmp_path / "project"
    project.mkdir()
    _write_project(project)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEM_")}
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*_stem_command(), "worker", "--app", "myapp:app", "--url", url]
            + ["--concurrency", "2", "--grace-period", "2"],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        # Generous bounds: a subprocess on a loaded 2-core machine.
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_fail_if_exits, proc, log)
                async with stem.Client.from_url(url) as client:
                    task_id = await client.enqueue(
                        "project.greet", args={"name": "Ada"}
                    )
                    result = await client.wait_for(task_id, timeout=60)
                nursery.cancel_scope.cancel()
    finally:
        code = stop_process(proc, timeout=60)
    output = log.read_text()
    assert result.state is stem.TaskState.SUCCEEDED, (result.error, output)
    assert result.value == "starring Ada via project-gateway"
    assert code == 0, output
    assert "SIGTERM" in output
