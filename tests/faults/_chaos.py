"""Shared plumbing of the chaos tests: sizes from the environment, worker and
service processes of tests/chaos_app.py, a random killer, the report line.

Sizes are CI-sized by default; the environment scales them up (the documented
full run is ``STEM_CHAOS_TASKS=5000``, see docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio

import stem
from tests.chaos_app import EFFECTS_ENV, LOG_ENV, read_log

ROOT = Path(__file__).resolve().parent.parent.parent
APP_SPEC = "tests.chaos_app:app"
SERVICE = "import trio, stem; trio.run(stem.main)"


def size(name: str, default: int) -> int:
    """``int(os.environ[name])`` when set and positive, else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value <= 0:
        raise ValueError(f"{name} must be a positive whole number, got {raw!r}")
    return value


def rng() -> random.Random:
    """Random choices of a run, reproducible with ``STEM_CHAOS_SEED``."""
    seed = int(os.environ.get("STEM_CHAOS_SEED", "0")) or random.randrange(1, 10**6)
    print(f"chaos seed {seed} (STEM_CHAOS_SEED={seed} repeats the choices)")
    return random.Random(seed)


def planned_failures(n: int) -> int:
    """Attempts of task ``n`` that fail on purpose (a quarter retry once, a
    ninth of the rest twice)."""
    if n % 4 == 0:
        return 1
    if n % 9 == 0:
        return 2
    return 0


async def publish_all(
    client: stem.Client,
    ids: list[str],
    *,
    sleep: float,
    batch: int = 200,
    every: float = 0.0,
) -> None:
    """``chaos.flaky`` task ``i`` under ``ids[i]``, each sleeping ``sleep`` s
    and failing its planned attempts; in batches of ``batch``, one every
    ``every`` seconds (a steady arrival keeps the run going while the
    chaos happens, however fast the machine)."""
    for start in range(0, len(ids), batch):
        if start and every:
            await trio.sleep(every)
        await client.publish(
            [
                client.build_envelope(
                    "chaos.flaky",
                    {"n": i, "sleep": sleep, "fail": planned_failures(i)},
                    task_id=ids[i],
                )
                for i in range(start, min(start + batch, len(ids)))
            ]
        )


def spawn_worker(
    url: str, log: Path, errors: Path, *, concurrency: int = 5
) -> subprocess.Popen[bytes]:
    """``stem worker --app tests.chaos_app:app`` recording into ``log``."""
    env = {**os.environ, LOG_ENV: str(log)}
    with open(errors, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "stem.cli", "worker", "--app", APP_SPEC]
            + ["--url", url, "--concurrency", str(concurrency)]
            + ["--grace-period", "2", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def spawn_service(
    url: str, log: Path, effects: Path, errors: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``trio.run(stem.main)`` for tests.chaos_app:app on ``url`` (worker,
    workflow engine and beat in one process)."""
    full = {
        **os.environ,
        "STEM_APP": APP_SPEC,
        "STEM_BROKER_URL": url,
        "STEM_CONCURRENCY": "4",
        "STEM_GRACE_PERIOD": "2",
        "STEM_LOG_LEVEL": "WARNING",
        LOG_ENV: str(log),
        EFFECTS_ENV: str(effects),
        **env,
    }
    with open(errors, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", SERVICE],
            cwd=ROOT,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(timeout=10)


@attrs.define
class Killer:
    """SIGKILLs a random live, working process of ``procs`` every ``every``
    seconds (uniform between the bounds) and starts a replacement with
    ``spawn``. ``working(pid)`` says a process got going (it started a task):
    on a loaded machine a new Python process takes seconds to start, and
    killing it before it ran anything tests nothing. A round is skipped
    unless two processes are working, so one always is (a machine where a
    start takes longer than the period would otherwise make no progress)."""

    procs: list[subprocess.Popen[bytes]]
    spawn: Callable[[], subprocess.Popen[bytes]]
    random: random.Random
    working: Callable[[int], bool] = lambda pid: True
    every: tuple[float, float] = (1.5, 3.0)
    killed: set[int] = attrs.field(factory=set)
    #: (pid, trio time) of each kill
    kills: list[tuple[int, float]] = attrs.field(factory=list)

    async def run(self, done: trio.Event) -> None:
        """Kill until ``done`` is set."""
        while not done.is_set():
            with trio.move_on_after(self.random.uniform(*self.every)):
                await done.wait()
            if done.is_set():
                return
            live = [p for p in self.procs if p.poll() is None]
            candidates = [p for p in live if self.working(p.pid)]
            if len(candidates) < 2:
                continue  # keep one working process, or nothing progresses
            victim = self.random.choice(candidates)
            # Known as killed before it dies: check_alive runs meanwhile.
            self.killed.add(victim.pid)
            self.kills.append((victim.pid, trio.current_time()))
            victim.kill()
            await trio.to_thread.run_sync(victim.wait)
            self.procs.append(self.spawn())

    def check_alive(self, errors: Path) -> None:
        """Fail when a process this killer did not kill has died."""
        for proc in self.procs:
            if proc.poll() is not None and proc.pid not in self.killed:
                pytest.fail(
                    f"process {proc.pid} exited by itself with {proc.returncode}:\n"
                    f"{errors.read_text()[-3000:]}"
                )

    def stop_all(self) -> None:
        for proc in self.procs:
            stop(proc)


def started_in(log: Path) -> Callable[[int], bool]:
    """``working`` for a :class:`Killer`: the pid started a task in ``log``."""

    def working(pid: int) -> bool:
        return any(r.pid == pid for r in read_log(log) if r.kind == "S")

    return working


def report(name: str, **counts: object) -> str:
    """Print (and append to ``STEM_CHAOS_REPORT`` when set) one line of
    counts: ``CHAOS <name>: tasks=... kills=... ...``."""
    line = f"CHAOS {name}: " + " ".join(f"{k}={v}" for k, v in counts.items())
    print(line)
    path = os.environ.get("STEM_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    return line
