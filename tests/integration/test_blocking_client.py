"""stem.BlockingClient: the producer and reader calls as plain methods,
from many threads at once, across os.fork, and closed at interpreter exit;
run against SQLite (a file shared with a worker thread), Redis and
PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import trio

import stem
from stem import TaskState
from tests.cli_process import ROOT
from tests.clients_app import app, worker_thread


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/blocking.db?poll_interval=0.02"
    if request.param == "postgres":
        fresh: str = request.getfixturevalue("postgres_url")  # a fresh schema
        return fresh
    value: str = request.getfixturevalue("redis_url")
    return f"{value}?namespace=b{uuid.uuid4().hex[:12]}"


def test_the_whole_surface_blocks_and_returns_what_the_trio_client_does(
    url: str,
) -> None:
    """enqueue, get, wait_for, revoke, canvas handles, workflows, dead
    letters and queue stats work as plain calls while a worker runs."""
    with stem.BlockingClient(url, app=app) as client, worker_thread(url):
        task_id = client.enqueue("clients.add", {"a": 2, "b": 3})
        result = client.wait_for(task_id, timeout=20)
        assert (result.state, result.value) == (TaskState.SUCCEEDED, 5)
        assert result.progress is not None
        assert client.get(task_id) == result
        with pytest.raises(stem.EncodeError):
            client.enqueue("clients.add", {"a": object()})
        envelope = client.build_envelope("clients.add", {"a": 4, "b": 4})
        assert client.publish([envelope]) == [envelope.id]
        assert client.wait_for(envelope.id, timeout=20).value == 8

        chain = client.canvas.chain(
            [
                stem.signature("clients.add", {"a": 1, "b": 1}),
                stem.signature("clients.add", {"a": 10, "b": 10}),
            ]
        )
        assert chain.get(timeout=20) == 20
        assert chain.state() is TaskState.SUCCEEDED
        group = client.canvas.group(
            [stem.signature("clients.add", {"a": i, "b": i}) for i in range(3)]
        )
        assert group.get(timeout=20) == [0, 2, 4]
        progress = group.progress()
        assert progress is not None
        assert (progress.done, progress.total) == (3, 3)

        run_id = client.workflows.start("clients.greet")
        with pytest.raises(stem.WaitTimeout):
            client.workflows.wait(run_id, timeout=0.2)
        for _ in range(200):  # the run waits for its event once the activity ran
            if client.workflows.emit("clients.name", "ada"):
                break
            time.sleep(0.05)
        assert client.workflows.wait(run_id, timeout=20).result == "hello ada 3"

        failed = client.wait_for(client.enqueue("clients.boom"), timeout=20)
        assert failed.state is TaskState.FAILED
        dead = client.dead_letters()
        for _ in range(200):  # the entry is written just after the result
            if dead.count():
                break
            time.sleep(0.05)
        assert [e.task_id for e in dead.list()] == [failed.task_id]
        assert dead.replay(failed.task_id) == [failed.task_id]

        later = client.enqueue("clients.add", {"a": 1, "b": 1}, countdown=3600)
        client.revoke(later)
        revoked = client.get(later)
        assert revoked is not None
        assert revoked.state is TaskState.REVOKED
    with pytest.raises(RuntimeError, match="closed"):
        client.get(task_id)


def test_many_threads_share_one_client(url: str) -> None:
    """16 threads enqueueing and reading through one client at once each
    get their own ids back; every task is stored once."""
    client = stem.BlockingClient(url, app=app)
    ids: list[list[str]] = [[] for _ in range(16)]
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def produce(n: int) -> None:
        try:
            start.wait()
            for i in range(20):
                task_id = client.enqueue("clients.add", {"a": n, "b": i})
                got = client.get(task_id)
                assert got is not None
                assert got.state is TaskState.QUEUED
                ids[n].append(task_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    every = [task_id for chunk in ids for task_id in chunk]
    assert len(set(every)) == 320
    assert client.queue_stats().pending == 320
    client.close()


def test_a_forked_child_reconnects_and_the_parent_goes_on(url: str) -> None:
    """A client used before os.fork works in the child (new thread, new
    connections) and still in the parent."""
    client = stem.BlockingClient(url, app=app)
    before = client.enqueue("clients.add", {"a": 1, "b": 1})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return to pytest
        code = 1
        try:
            child_id = client.enqueue("clients.add", {"a": 2, "b": 2})
            seen = client.get(before)
            ok = seen is not None and client.get(child_id) is not None
            os.write(write, f"{child_id} {ok}\n".encode())
            client.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read().split()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_id, ok = report
    assert ok == "True"
    after = client.enqueue("clients.add", {"a": 3, "b": 3})
    assert client.get(child_id) is not None
    assert client.queue_stats().pending == 3
    assert len({before, child_id, after}) == 3
    client.close()


def test_open_clients_close_at_interpreter_exit(tmp_path: Path) -> None:
    """A script that exits without close() exits at once with status 0, its
    task stored and the Trio thread stopped before the process ends."""
    url = f"sqlite:///{tmp_path}/exit.db"
    script = textwrap.dedent(
        f"""
        import atexit, threading

        def report():  # registered first, so it runs after stem's shutdown
            names = [t.name for t in threading.enumerate()]
            print("trio thread alive:", "stem-trio" in names, flush=True)

        atexit.register(report)
        import stem
        client = stem.BlockingClient({url!r})
        print(client.enqueue("clients.add", {{"a": 1, "b": 2}}), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    task_id, alive = proc.stdout.strip().splitlines()
    assert alive == "trio thread alive: False"
    with stem.BlockingClient(url) as client:
        stored = client.get(task_id)
    assert stored is not None
    assert stored.state is TaskState.QUEUED


def test_calling_it_inside_trio_is_refused() -> None:
    """Inside a Trio run the blocking client says to use stem.Client."""
    client = stem.BlockingClient()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="inside a Trio run"):
            client.enqueue("clients.add", {"a": 1, "b": 1})

    trio.run(main)
    client.close()
