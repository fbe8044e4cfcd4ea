"""Poison messages and the harness that runs them past a real worker.

A :class:`Case` is one poison written straight into a backend, and what must
become of it: ``dead`` (dead-lettered with ``reason``; found by its task id
or, without one, by its body), or ``runs`` (a strange but valid message: the
task succeeds exactly once), or ``ignored`` (bookkeeping the backend cleans
up, or a broadcast/control request the worker drops with a warning).

:func:`run_against_worker` starts ``stem worker`` on a URL, surrounds the
backend's poison with good tasks, and checks that every good task succeeds
exactly once, every poison ends as its case says, and the process stays up
and answers a ping. It returns a :class:`Tally` for the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

import stem
from tests.e2e_app import APP_SPEC, LOG_ENV, ROOT, app, read_log, run_counts

#: The worker under test runs nothing larger (bytes), so a "too large"
#: poison stays small.
MAX_BYTES = 65_536
GOOD_PER_WAVE = 10


@attrs.frozen
class Case:
    label: str
    expect: str  # "dead", "runs" or "ignored"
    reason: str = ""
    task_id: str = ""
    body: bytes = b""


def envelope(task_id: str, name: str = "e2e.work", **fields: Any) -> dict[str, Any]:
    """A valid envelope of ``name`` (override any field)."""
    data: dict[str, Any] = {
        "v": 1,
        "id": task_id,
        "name": name,
        "args": {"n": 1},
        "headers": {},
        "queue": "default",
        "priority": 0,
        "attempt": 1,
        "max_retries": 0,
        "not_before": None,
        "enqueued_at": 0.0,
        "expires": None,
        "meta": {},
    }
    data.update(fields)
    return data


def text(data: Any) -> bytes:
    return json.dumps(data).encode()


NESTED = b"[" * 3000 + b"]" * 3000


def queue_poison() -> list[Case]:
    """Bodies no backend can run, each with the reason it must die with.
    ``task_id`` is what the entry must carry (the body's id where the body
    still reads as JSON, else empty)."""
    nan = text(envelope("p-nan")).replace(b'{"n": 1}', b'{"n": NaN}')
    inf = text(envelope("p-inf")).replace(b'{"n": 1}', b'{"n": 1e999}')
    big = text(envelope("p-big", args={"n": 1, "pad": "x" * (MAX_BYTES * 2)}))
    return [
        Case("not JSON", "dead", "decode-error", body=b"{broken"),
        Case("not UTF-8", "dead", "decode-error", body=b"\xff\xfe\x00x"),
        Case("nested 3,000 levels", "dead", "decode-error", body=NESTED),
        Case("NaN in args", "dead", "decode-error", body=nan),
        Case("Infinity in args", "dead", "decode-error", body=inf),
        Case(
            "priority 2**15",
            "dead",
            "decode-error",
            "p-prio",
            text(envelope("p-prio", priority=2**15)),
        ),
        Case(
            "unique_key an object",
            "dead",
            "decode-error",
            "p-uk",
            text(envelope("p-uk", meta={"unique_key": {"a": 1}})),
        ),
        Case(
            "bogus canvas frame",
            "dead",
            "decode-error",
            "p-canvas",
            text(envelope("p-canvas", meta={"canvas": {"stack": [{"k": "chord"}]}})),
        ),
        Case(
            "args a string",
            "dead",
            "decode-error",
            "p-args",
            text(envelope("p-args", args="x")),
        ),
        Case("too large", "dead", "message-too-large", "p-big", big),
        Case(
            "unregistered task",
            "dead",
            "unregistered-task",
            "p-unreg",
            text(envelope("p-unreg", name="no.such.task")),
        ),
    ]


def control_poison(worker_id: str) -> list[tuple[str, bytes]]:
    """Broadcast bodies a worker must drop (each would have crashed it, or
    worse: the last would stop it if a string destination were read as a
    list of characters)."""
    req = {"kind": "stem.control", "request_id": "r", "command": "ping"}
    return [
        ("nested 3,000 levels", NESTED),
        ("not JSON", b"{broken"),
        ("a JSON array", b"[1, 2]"),
        ("destination an int", text({**req, "destination": 5})),
        ("args a string", text({**req, "command": "pause", "args": "default"})),
        ("request_id an int", text({**req, "request_id": 9})),
        (
            "destination a string",
            text(
                {
                    **req,
                    "command": "shutdown",
                    "args": {"mode": "hard"},
                    "destination": worker_id + "-and-more",
                }
            ),
        ),
    ]


@attrs.define
class Tally:
    backend: str
    cases: int = 0
    good: int = 0
    dead: int = 0
    ran: int = 0
    ignored: int = 0

    def line(self) -> str:
        return (
            f"hostile[{self.backend}]: {self.cases} poison cases, "
            f"{self.good} good tasks completed once each, {self.dead} poison "
            f"dead-lettered with their reason, {self.ran} odd-but-valid ran once, "
            f"{self.ignored} dropped/cleaned up"
        )


def spawn(url: str, log: Path, stderr: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, LOG_ENV: str(log)}
    with open(stderr, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "stem.cli", "worker", "--app", APP_SPEC]
            + ["--url", url, "--concurrency", "16", "--grace-period", "5"]
            + ["--max-message-bytes", str(MAX_BYTES), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


Inject = Callable[[stem.Client], Awaitable[list[Case]]]
Broadcast = Callable[[stem.Client, bytes], Awaitable[None]]


async def run_against_worker(
    backend: str,
    url: str,
    tmp_path: Path,
    *,
    inject: Inject,
    broadcast_raw: Broadcast,
    extra_broadcasts: Callable[[stem.Client], Awaitable[int]] | None = None,
) -> Tally:
    log, errors = tmp_path / "executions.log", tmp_path / "worker.err"
    tally = Tally(backend)
    proc = spawn(url, log, errors)
    try:
        async with stem.Client.from_url(url, app=app) as client:
            worker_id = await _wait_ready(client, proc, errors)
            good: list[str] = []

            async def wave(tag: str) -> None:
                for i in range(GOOD_PER_WAVE):
                    task_id = f"good-{tag}-{i}"
                    await client.enqueue("e2e.work", {"n": i}, task_id=task_id)
                    good.append(task_id)

            await wave("before")
            cases = await inject(client)
            await wave("between")
            for _label, body in control_poison(worker_id):
                await broadcast_raw(client, body)
                tally.cases += 1
                tally.ignored += 1
            if extra_broadcasts is not None:
                extra = await extra_broadcasts(client)
                tally.cases += extra
                tally.ignored += extra
            await wave("after")
            with trio.fail_after(60):
                for task_id in good:
                    result = await client.wait_for(task_id, timeout=60)
                    assert result.state is stem.TaskState.SUCCEEDED, (task_id, result)
            tally.good = len(good)
            tally.cases += len(cases)
            await _check_cases(client, cases, tally, errors)
            replies = await client.control.ping(timeout=3)
            assert [r.worker_id for r in replies] == [worker_id], errors.read_text()
            assert proc.poll() is None, errors.read_text()
            counts = run_counts(read_log(log))
            ran_cases = [c.task_id for c in cases if c.expect == "runs"]
            for task_id in good + ran_cases:
                assert counts.get(task_id) == 1, (task_id, counts.get(task_id))
    finally:
        code = await trio.to_thread.run_sync(_stop, proc)
    assert code == 0, errors.read_text()
    assert "Traceback" not in errors.read_text(), errors.read_text()
    print(tally.line())
    return tally


async def _wait_ready(
    client: stem.Client, proc: subprocess.Popen[bytes], errors: Path
) -> str:
    with trio.fail_after(30):
        while True:
            assert proc.poll() is None, errors.read_text()
            replies = await client.control.ping(timeout=0.5)
            if replies:
                return replies[0].worker_id


async def _check_cases(
    client: stem.Client, cases: list[Case], tally: Tally, errors: Path
) -> None:
    dead = [c for c in cases if c.expect == "dead"]
    dlq = client.dead_letters("default")
    with trio.fail_after(30):
        while await dlq.count() < len(dead):
            await trio.sleep(0.05)
    entries = await dlq.list(limit=1000)
    assert len(entries) == len(dead), [(e.task_id, e.reason) for e in entries]
    assert len({e.entry_id for e in entries}) == len(entries)
    for case in dead:
        if case.task_id:
            found = [e for e in entries if e.task_id == case.task_id]
        else:
            found = [e for e in entries if e.raw == case.body[:65536]]
        assert len(found) == 1, (case.label, [(e.task_id, e.raw) for e in entries])
        assert found[0].reason == case.reason, (case.label, found[0])
        assert found[0].error is not None
        assert found[0].error.message
        tally.dead += 1
    for case in cases:
        if case.expect == "runs":
            result = await client.wait_for(case.task_id, timeout=30)
            assert result.state is stem.TaskState.SUCCEEDED, (case.label, result)
            tally.ran += 1
        elif case.expect == "ignored":
            tally.ignored += 1


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode
