"""Wake-ups across processes: a result written by another process wakes
``wait``; a publish by another process wakes a blocked ``claim``. Both must
arrive well before the safety re-check (2 s), proving they are notified, not
polled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import trio

from stem._result import TaskResult
from stem._states import TaskState

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, time, trio
from stem.adapters.redis import open_backend
from stem._envelope import Envelope
from stem._result import TaskResult
from stem._states import TaskState

url, namespace, mode, task_id = sys.argv[1:5]

async def main():
    async with open_backend(url, namespace=namespace) as backend:
        print("ready", flush=True)
        sys.stdin.readline()
        if mode == "result":
            await backend.results.set_state(
                [TaskResult(task_id=task_id, state=TaskState.SUCCEEDED, value=42)]
            )
        else:
            await backend.broker.publish([Envelope(id=task_id, name="x", queue="q")])
        print(repr(time.time()), flush=True)

trio.run(main)
"""


async def _child(url: str, namespace: str, mode: str, task_id: str):
    return await trio.lowlevel.open_process(
        [sys.executable, "-c", CHILD, url, namespace, mode, task_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _line(stream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


@pytest.mark.parametrize("mode", ["result", "publish"])
async def test_other_process_wakes_waiter(redis_backend_factory, redis_url, mode):
    """A write made by another process wakes this process's waiter at once."""
    namespace = f"x{uuid.uuid4().hex[:8]}"
    task_id = f"task-{mode}"
    async with redis_backend_factory(namespace=namespace) as backend:
        proc = await _child(redis_url, namespace, mode, task_id)
        try:
            with trio.fail_after(30):
                assert await _line(proc.stdout) == "ready"
                woke_at: list[float] = []

                async def waiter() -> None:
                    if mode == "result":
                        result = await backend.results.wait(task_id, timeout=20)
                        assert result is not None
                        assert result.value == 42
                    else:
                        got = await backend.broker.claim(
                            ["q"], limit=1, lease=10, consumer="w", wait=20
                        )
                        assert [d.task_id for d in got] == [task_id]
                    woke_at.append(time.time())

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(waiter)
                    await trio.sleep(0.3)  # the waiter is blocked by now
                    await proc.stdin.send_all(b"go\n")
                    written_at = float(await _line(proc.stdout))
            assert woke_at[0] - written_at < 0.5
        finally:
            with trio.CancelScope(shield=True):
                await proc.wait()


async def test_local_result_write_wakes_waiter_immediately(redis_backend_factory):
    """In-process writes wake a waiter without waiting for pub/sub."""
    async with redis_backend_factory() as backend:
        result = TaskResult(task_id="t", state=TaskState.FAILED)
        async with trio.open_nursery() as nursery:

            async def write() -> None:
                await trio.sleep(0.05)
                await backend.results.set_state([result])

            nursery.start_soon(write)
            with trio.fail_after(1):
                got = await backend.results.wait("t", timeout=10)
        assert got is not None
        assert got.state is TaskState.FAILED
