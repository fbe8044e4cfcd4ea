"""The task module the end-to-end tests run in worker processes
(``--app tests.e2e_app:app`` or ``STEM_APP=tests.e2e_app:app``).

Every execution is recorded in the file named by ``STEM_E2E_LOG`` (when set):
one line ``S <task_id> <pid> <attempt>`` when it starts and one line
``E <task_id> <pid> <attempt>`` when it returns. Each line is a single
``os.write`` on an ``O_APPEND`` descriptor, so lines from several processes
never interleave. :func:`read_log` parses the file back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import trio

import stem

LOG_ENV = "STEM_E2E_LOG"


def _record(kind: str, ctx: stem.TaskContext) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = f"{kind} {ctx.task_id} {os.getpid()} {ctx.attempt}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@stem.task("e2e.work", visibility_timeout=3.0)
async def work(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    """Sleep ``args["sleep"]`` seconds and return ``args["n"] * 2`` (a short
    lease, so a killed worker's tasks come back within seconds)."""
    _record("S", ctx)
    await trio.sleep(float(args.get("sleep", 0.0)))
    _record("E", ctx)
    return int(args["n"]) * 2


@stem.task("e2e.long", visibility_timeout=2.0)
async def long(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    """Run ``args["sleep"]`` seconds (longer than the 2 s lease)."""
    _record("S", ctx)
    await trio.sleep(float(args["sleep"]))
    _record("E", ctx)
    return "done"


@stem.task("e2e.noop")
async def noop(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    """Do nothing (benchmarks)."""


app = stem.App([work, long, noop])


class Execution(NamedTuple):
    kind: str  # "S" (started) or "E" (ended)
    task_id: str
    pid: int
    attempt: int


def read_log(path: Path) -> list[Execution]:
    """The records written so far (a torn last line is ignored)."""
    if not path.exists():
        return []
    return list(_parse(path.read_text()))


def _parse(text: str) -> Iterator[Execution]:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("S", "E"):
            yield Execution(parts[0], parts[1], int(parts[2]), int(parts[3]))


# -- helpers for the tests that run workers as processes --------------------

ROOT = Path(__file__).resolve().parent.parent
APP_SPEC = "tests.e2e_app:app"


def spawn_worker(
    url: str,
    log: Path,
    *,
    concurrency: int = 10,
    grace_period: float = 5.0,
    stderr: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``stem worker --app tests.e2e_app:app`` as a child process recording
    its executions in ``log``."""
    env = {**os.environ, LOG_ENV: str(log)}
    err = open(stderr, "ab") if stderr is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "stem.cli", "worker", "--app", APP_SPEC]
            + ["--url", url, "--concurrency", str(concurrency)]
            + ["--grace-period", str(grace_period), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    finally:
        if stderr is not None:
            err.close()  # type: ignore[union-attr]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM ``proc`` (if it still runs) and wait; SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def started_by(records: list[Execution], pid: int) -> set[str]:
    return {r.task_id for r in records if r.kind == "S" and r.pid == pid}


def ended_by(records: list[Execution], pid: int) -> set[str]:
    return {r.task_id for r in records if r.kind == "E" and r.pid == pid}


def run_counts(records: list[Execution]) -> dict[str, int]:
    """How many times each task id started."""
    counts: dict[str, int] = {}
    for r in records:
        if r.kind == "S":
            counts[r.task_id] = counts.get(r.task_id, 0) + 1
    return counts
