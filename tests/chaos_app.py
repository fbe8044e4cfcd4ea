"""The app the chaos tests (tests/faults/test_chaos_*.py) run in worker and
service processes (``STEM_APP=tests.chaos_app:app``).

Every execution appends one line ``<kind> <task_id> <pid> <attempt>`` to the
file named by ``STEM_CHAOS_LOG`` (``S`` started, ``F`` failed on purpose,
``E`` ended); each line is one ``os.write`` on an ``O_APPEND`` descriptor, so
processes never interleave. Workflow activities apply their effect in a
SQLite side table (``STEM_CHAOS_EFFECTS``) keyed by their idempotency key,
the task id (``<run_id>:<step index>``): a re-run of the same step is
absorbed, and a step run again under another key would show as a second row
of the same ``(run, step)``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

import trio

import stem

LOG_ENV = "STEM_CHAOS_LOG"
EFFECTS_ENV = "STEM_CHAOS_EFFECTS"

#: fast retries, so a chaos run spends its time on chaos, not on backoff
FAST_RETRY = stem.RetryPolicy(base=0.05, cap=0.2)


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


@stem.task(
    "chaos.flaky", visibility_timeout=2.0, max_retries=4, retry_policy=FAST_RETRY
)
async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    """Sleep ``args["sleep"]`` s; fail attempts up to ``args["fail"]``, then
    return ``args["n"] * 3``."""
    _record("S", ctx)
    await trio.sleep(float(args["sleep"]))
    if ctx.attempt <= int(args["fail"]):
        _record("F", ctx)
        raise RuntimeError(f"planned failure of attempt {ctx.attempt}")
    _record("E", ctx)
    return int(args["n"]) * 3


def effects_db(path: Path | str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, run TEXT, "
        "step TEXT, pid INTEGER)"
    )
    return db


def _apply(key: str, run: str, step: str) -> bool:
    """Insert the effect once per key; True when this call applied it."""
    db = effects_db(os.environ[EFFECTS_ENV])
    try:
        cur = db.execute(
            "INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?)",
            (key, run, step, os.getpid()),
        )
        return cur.rowcount == 1
    finally:
        db.close()


@stem.task(
    "chaos.effect", visibility_timeout=2.0, max_retries=3, retry_policy=FAST_RETRY
)
async def effect(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    """A workflow activity with a side effect, applied idempotently."""
    _record("S", ctx)
    await trio.sleep(float(args.get("sleep", 0.05)))
    await trio.to_thread.run_sync(_apply, ctx.task_id, args["run"], args["step"])
    _record("E", ctx)
    return f"{args['step']}:{args['run']}"


async def order(wf: stem.WorkflowContext) -> str:
    """reserve, an inline step, a durable sleep, ship and notify at once, bill."""
    run = wf.params["run"]

    def act(step: str, sleep: float = 0.05) -> Any:
        return wf.activity(
            "chaos.effect", args={"run": run, "step": step, "sleep": sleep}
        )

    reserve = await act("reserve", 0.3)
    total = await wf.step("total", lambda: len(reserve))
    await wf.sleep(0.3)
    ship, notify = await wf.gather(act("ship", 0.3), act("notify"))
    bill = await act("bill", 0.2)
    return f"{reserve}|{total}|{ship}|{notify}|{bill}"


#: the steps of ``order`` with an effect, and its result for run ``run``
ORDER_STEPS = ("reserve", "ship", "notify", "bill")


def order_result(run: str) -> str:
    reserve = f"reserve:{run}"
    return f"{reserve}|{len(reserve)}|ship:{run}|notify:{run}|bill:{run}"


app = stem.App(
    tasks=[flaky, effect], workflows=[stem.WorkflowScript("chaos.order", order)]
)


class Execution(NamedTuple):
    kind: str
    task_id: str
    pid: int
    attempt: int


def read_log(path: Path) -> list[Execution]:
    """The records written so far (a torn last line is ignored)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("S", "F", "E"):
            found.append(Execution(parts[0], parts[1], int(parts[2]), int(parts[3])))
    return found
