"""SQLite-specific behaviour: URLs, schema, the claim index, wake-ups."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
import trio
import trio.testing

from stem import ConfigError, Envelope, TaskResult, TaskState
from stem._clock import now
from stem._codec import encode_result
from stem._wfcodec import encode_run
from stem.adapters.sqlite import _schema, open_backend, parse_url
from stem.adapters.sqlite._schema import SCHEMA_VERSION
from stem.contracts import Backend, DeadLetter, WorkflowRun


async def settle() -> None:
    """Let thread hops finish (real time), then every task block again."""
    for _ in range(3):
        await trio.to_thread.run_sync(time.sleep, 0.05)
        await trio.testing.wait_all_tasks_blocked()


def env(task_id: str, queue: str = "default", **kw) -> Envelope:
    return Envelope(id=task_id, name="t", queue=queue, **kw)


def test_url_forms(tmp_path, monkeypatch):
    """A three-slash path is relative to the working directory, four is absolute."""
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite:///rel.db").path == str(tmp_path / "rel.db")
    assert parse_url("sqlite:////abs/x.db").path == "/abs/x.db"
    assert parse_url("sqlite:///:memory:").in_memory
    cfg = parse_url("sqlite:///a.db?poll_interval=0.2&synchronous=full")
    assert cfg.poll_interval == 0.2
    assert cfg.synchronous == "FULL"
    with pytest.raises(ConfigError):
        parse_url("sqlite://host/a.db")
    with pytest.raises(ConfigError):
        parse_url("sqlite:///a.db?bogus=1")
    with pytest.raises(ConfigError):
        parse_url("sqlite:///a.db?poll_interval=0")


async def test_relative_url_creates_file(tmp_path, monkeypatch):
    """sqlite:///stem.db creates stem.db in the working directory, in WAL mode."""
    monkeypatch.chdir(tmp_path)
    async with open_backend("sqlite:///stem.db") as backend:
        assert isinstance(backend, Backend)
        await backend.broker.publish([env("a")])
    conn = sqlite3.connect(tmp_path / "stem.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_reopen_keeps_messages(sqlite_backend_factory, tmp_path):
    """Messages survive closing and reopening the file; migrations are idempotent."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    async with open_backend(url) as backend:
        await backend.broker.publish([env("a"), env("b")])
    async with open_backend(url) as backend:
        got = await backend.broker.claim(["default"], limit=10, lease=30, consumer="c")
        assert [d.task_id for d in got] == ["a", "b"]


async def test_memory_url_is_single_process():
    """sqlite:///:memory: works in one process and says it is not shared."""
    async with open_backend("sqlite:///:memory:") as backend:
        assert not backend.capabilities.cross_process
        await backend.broker.publish([env("a")])
        got = await backend.broker.claim(["default"], limit=1, lease=5, consumer="c")
        assert got[0].task_id == "a"


def test_claim_query_uses_index(tmp_path):
    """The claim query is a range search on (queue, priority, visible_at)."""
    from stem.adapters.sqlite._broker import _SELECT_READY
    from stem.adapters.sqlite._schema import migrate

    conn = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    migrate(conn)
    plan = " ".join(
        str(row[-1])
        for row in conn.execute("EXPLAIN QUERY PLAN " + _SELECT_READY, ("q", 0, 1.0, 5))
    )
    conn.close()
    assert (
        "USING INDEX messages_claim (queue=? AND priority=? AND visible_at<?)" in plan
    )
    assert "TEMP B-TREE" not in plan


async def test_broker_basics(sqlite_backend_factory, mock_clock):
    """Priority, delay, lease expiry, stale receipts, nack, dead letters, stats."""
    async with sqlite_backend_factory() as backend:
        b = backend.broker
        t0 = now()
        await b.publish(
            [env("low"), env("high", priority=9), env("later", not_before=t0 + 10)]
        )
        s = await b.stats("default")
        assert (s.pending, s.delayed, s.in_flight) == (2, 1, 0)
        got = await b.claim(["default"], limit=10, lease=5, consumer="c")
        assert [d.task_id for d in got] == ["high", "low"]
        mock_clock.jump(6)
        again = await b.claim(["default"], limit=10, lease=5, consumer="c")
        assert sorted(d.task_id for d in again) == ["high", "low"]
        assert all(d.delivery_count == 2 for d in again)
        assert not await b.nack(got[0])  # stale receipt
        assert await b.extend(got, 5) == [False, False]
        assert await b.nack(again[0], delay=1)
        await b.ack([again[1]])
        mock_clock.jump(10)
        left = await b.claim(["default"], limit=10, lease=5, consumer="c")
        assert sorted(d.task_id for d in left) == ["high", "later"]
        entry = DeadLetter(
            task_id="later",
            name="t",
            queue="default",
            reason="rejected",
            error=None,
            attempts=1,
            dead_at=now(),
            envelope=left[1].envelope,
        )
        assert await b.dead_letter(left[1], entry)
        assert (await b.get_dead("default", "later")).reason == "rejected"
        assert await b.replay_dead("default", dry_run=True) == ["later"]
        assert await b.replay_dead("default") == ["later"]
        assert await b.list_dead("default") == []
        assert await b.queues() == ["default"]


async def test_poison_message(sqlite_backend_factory):
    """An undecodable body is delivered with its raw bytes and the reason."""
    async with sqlite_backend_factory() as backend:
        await backend.broker.publish_raw("default", b"\xff not json")
        (d,) = await backend.broker.claim(["default"], limit=5, lease=5, consumer="c")
        assert d.envelope is None
        assert d.raw == b"\xff not json"
        assert d.decode_error


async def test_claim_woken_by_publish(sqlite_backend_factory, mock_clock):
    """A waiting claim returns when the same process publishes, with no clock
    movement (so no poll could have found it)."""
    async with sqlite_backend_factory() as backend, trio.open_nursery() as nursery:
        got = []

        async def claimer():
            got.extend(
                await backend.broker.claim(
                    ["default"], limit=5, lease=5, consumer="c", wait=30
                )
            )

        nursery.start_soon(claimer)
        await settle()
        assert got == []
        await backend.broker.publish([env("x")])
        await settle()
        assert [d.task_id for d in got] == ["x"]


async def test_claim_wakes_for_delayed(sqlite_backend_factory, mock_clock):
    """A waiting claim wakes when a delayed message becomes due."""
    async with sqlite_backend_factory() as backend:
        await backend.broker.publish([env("x", not_before=now() + 3)])
        got = []

        async def claimer():
            got.extend(
                await backend.broker.claim(
                    ["default"], limit=5, lease=5, consumer="c", wait=30
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(claimer)
            await settle()
            mock_clock.jump(2)
            await settle()
            assert got == []
            mock_clock.jump(1.01)
        assert [d.task_id for d in got] == ["x"]


async def test_cross_backend_wakeup(tmp_path):
    """Two backends on one file: a claim and a result wait see the other's writes."""
    url = f"sqlite:///{tmp_path / 'x.db'}?poll_interval=0.02"
    async with (
        open_backend(url) as a,
        open_backend(url) as b,
        trio.open_nursery() as nursery,
    ):

        async def produce():
            await trio.sleep(0.1)
            await b.broker.publish([env("x")])
            await trio.sleep(0.1)
            await b.results.set_state(
                [TaskResult(task_id="x", state=TaskState.SUCCEEDED, value=3)]
            )

        nursery.start_soon(produce)
        with trio.fail_after(2):
            got = await a.broker.claim(
                ["default"], limit=5, lease=5, consumer="c", wait=5
            )
            assert [d.task_id for d in got] == ["x"]
            res = await a.results.wait("x", timeout=5)
        assert res is not None
        assert res.value == 3


async def test_broadcast_across_backends(tmp_path):
    """A broadcast reaches subscribers of the same and another backend."""
    url = f"sqlite:///{tmp_path / 'x.db'}?poll_interval=0.02"
    async with (
        open_backend(url) as a,
        open_backend(url) as b,
        a.broker.subscribe() as ra,
        b.broker.subscribe() as rb,
    ):
        await a.broker.broadcast({"cmd": "ping"})
        with trio.fail_after(2):
            assert await ra.receive() == {"cmd": "ping"}
            assert await rb.receive() == {"cmd": "ping"}


async def test_results_and_stores(sqlite_backend_factory, mock_clock):
    """Terminal results are final; TTLs, locks, revocations, buckets behave."""
    async with sqlite_backend_factory() as backend:
        r = backend.results
        ok = TaskResult(task_id="t", state=TaskState.SUCCEEDED, value=1)
        run = TaskResult(task_id="t", state=TaskState.RUNNING)
        assert await r.set_state([run, ok, run], ttl=10) == [True, True, False]
        assert (await r.get("t")).value == 1
        mock_clock.jump(11)
        assert await r.get("t") is None
        assert await r.claim_once("k", "a")
        assert not await r.claim_once("k", "b")
        assert await r.reserve_unique("u", "t1", ttl=None) == "t1"
        assert await r.reserve_unique("u", "t2", ttl=None) == "t1"
        locks = backend.locks
        assert await locks.acquire("l", "a", ttl=5)
        assert not await locks.acquire("l", "b", ttl=5)
        mock_clock.jump(6)
        assert not await locks.renew("l", "a", ttl=5)
        assert await locks.acquire("l", "b", ttl=5)
        assert await locks.owner("l") == "b"
        from stem.contracts import Revocation

        v1 = await backend.revocations.revoke(Revocation(task_id="x"))
        v2 = await backend.revocations.revoke(Revocation(task_id="y", terminate=True))
        assert v2 > v1
        changes, latest = await backend.revocations.changes_since(v1)
        assert [c.task_id for c in changes] == ["y"]
        assert latest == v2
        assert await backend.limiter.take("b", rate=5, burst=1) == 0.0
        assert await backend.limiter.take("b", rate=5, burst=1) == pytest.approx(0.2)


@pytest.mark.skipif(os.environ.get("STEM_SKIP_SLOW") == "1", reason="slow")
async def test_batch_throughput(sqlite_backend_factory):
    """Batches of 100 publish, claim and ack quickly (a smoke check)."""
    async with sqlite_backend_factory() as backend:
        b = backend.broker
        envs = [env(f"t{i}") for i in range(2000)]
        t0 = trio.current_time()
        for i in range(0, 2000, 100):
            await b.publish(envs[i : i + 100])
        done = 0
        while done < 2000:
            got = await b.claim(["default"], limit=100, lease=30, consumer="c")
            await b.ack(got)
            done += len(got)
        assert trio.current_time() - t0 < 5


async def test_rows_written_before_migration_5_stay_readable(
    tmp_path, monkeypatch
) -> None:
    """A file at schema 4 (no run version or fence column, no group records) opens at
    the latest schema: its run keeps its version (claimed only by an engine
    that has it) with fencing token 0, and its group keeps its members."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:4])
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", 4)
    async with open_backend(url):
        pass
    monkeypatch.undo()
    at = now()
    body = json.loads(
        encode_run(WorkflowRun(run_id="r", workflow="wf", version=2, due_at=at))
    )
    del body["fence"]
    member = encode_result(TaskResult(task_id="m0", state=TaskState.SUCCEEDED))
    conn = sqlite3.connect(tmp_path / "old.db")
    with conn:
        conn.execute(
            "INSERT INTO wf_runs (run_id, workflow, status, parent_id, created_at, "
            "due_at, body) VALUES ('r', 'wf', 'pending', NULL, ?, ?, ?)",
            (at, at, json.dumps(body)),
        )
        conn.execute(
            "INSERT INTO group_members VALUES ('g', 0, ?, ?)", (at + 600, member)
        )
    conn.close()
    async with open_backend(url) as backend:
        store = backend.workflows
        old = await store.get_run("r")
        assert old is not None and (old.version, old.fence) == (2, 0)
        assert (
            await store.claim("e", names=["wf"], lease=5, max_versions={"wf": 1}) == []
        )
        (claimed,) = await store.claim(
            "e", names=["wf"], lease=5, max_versions={"wf": 2}
        )
        assert claimed.fence == 1
        assert sorted(await backend.results.group_results("g")) == [0]
        added = await backend.results.group_add(
            "g", 1, TaskResult(task_id="m1", state=TaskState.SUCCEEDED), ttl=600
        )
        assert added == 2
