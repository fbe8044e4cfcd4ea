"""Per-message isolation on the BrokerActor's batch paths: a message whose
write fails (a column it overflows, a record the backend refuses, a hook
that cannot follow its meta) is dead-lettered or has its reply failed, and
never drops, stalls or re-runs the rest of its batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio

import stem
from stem.actors import _isolate, _outcomes
from stem.actors._broker import BrokerActor, Finish, Publish
from stem.actors._isolate import WRITE_ERROR
from stem.actors._mailbox import Reply
from stem.adapters.memory import open_backend
from stem.contracts import Delivery


class ColumnOverflow(ValueError):
    """What a driver raises for a value its column cannot hold."""


class FaultyBroker:
    """A memory broker whose writes fail for chosen task ids, the way a
    Postgres int2 column fails a retry with priority 2**15."""

    def __init__(
        self,
        inner: Any,
        *,
        nack: set[str] = frozenset(),
        publish: set[str] = frozenset(),
    ) -> None:
        self.inner = inner
        self.bad_nack = set(nack)
        self.bad_publish = set(publish)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def nack(self, delivery: Delivery, **kw: Any) -> bool:
        if delivery.task_id in self.bad_nack and kw.get("requeue", True):
            raise ColumnOverflow(f"value out of range for {delivery.task_id}")
        return await self.inner.nack(delivery, **kw)

    async def publish(self, envelopes: Sequence[stem.Envelope]) -> None:
        if any(env.id in self.bad_publish for env in envelopes):
            raise ColumnOverflow("value out of range in the batch")
        await self.inner.publish(envelopes)


class FaultyResults:
    def __init__(self, inner: Any, *, bad: set[str]) -> None:
        self.inner = inner
        self.bad = bad

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def set_state(
        self, results: Sequence[stem.TaskResult], **kw: Any
    ) -> list[bool]:
        if any(r.task_id in self.bad for r in results):
            raise ColumnOverflow("the backend refused a record")
        flags: list[bool] = await self.inner.set_state(results, **kw)
        return flags


async def _claim(backend: Any, n: int) -> list[Delivery]:
    got = await backend.broker.claim(["default"], limit=n, lease=30, consumer="t")
    assert len(got) == n
    return list(got)


def _finish_all(deliveries: list[Delivery], done: list[str]) -> list[Finish]:
    return [
        Finish(
            delivery=d,
            action="ack",
            result=_outcomes.record(d.envelope, stem.TaskState.SUCCEEDED, stem.now()),
            on_done=lambda d: done.append(d.task_id),
        )
        for d in deliveries
    ]


async def test_a_retry_the_backend_refuses_is_dead_lettered_alone() -> None:
    """When the nack of one retry fails (a column overflow), that delivery is
    dead-lettered as write-error and the rest of the batch is settled."""
    async with open_backend() as backend:
        envs = [stem.Envelope(id=f"t{i}", name="x", max_retries=3) for i in range(5)]
        await backend.broker.publish(envs)
        deliveries = await _claim(backend, 5)
        backend.broker = FaultyBroker(backend.broker, nack={"t2"})
        done: list[str] = []
        finishes = []
        for d in deliveries:
            outcome = _outcomes.failed(
                d, RuntimeError("boom"), stem.TaskOptions(), at=stem.now()
            )
            finishes.append(_set_done(outcome.finish, done))
        await BrokerActor(backend).handle_batch(finishes)
        dead = await backend.broker.list_dead("default")
        stats = await backend.broker.stats("default")
        results = {t: await backend.results.get(t) for t in ("t1", "t2")}
    assert sorted(done) == [f"t{i}" for i in range(5)]
    assert [(e.task_id, e.reason) for e in dead] == [("t2", WRITE_ERROR)]
    assert "value out of range" in dead[0].error.message
    assert dead[0].envelope is not None  # replayable once the cause is fixed
    assert (stats.delayed, stats.in_flight) == (4, 0)
    assert results["t1"].state is stem.TaskState.RETRYING
    assert results["t2"].state is stem.TaskState.FAILED
    assert results["t2"].meta["reason"] == WRITE_ERROR


def _set_done(fin: Finish, done: list[str]) -> Finish:
    return attrs.evolve(fin, on_done=lambda d: done.append(d.task_id))


async def test_a_record_the_backend_refuses_poisons_only_its_finish() -> None:
    """A result record the backend refuses dead-letters that delivery; the
    others' results are stored and their messages acked."""
    async with open_backend() as backend:
        await backend.broker.publish(
            [stem.Envelope(id=f"t{i}", name="x") for i in range(4)]
        )
        deliveries = await _claim(backend, 4)
        inner = backend.results
        backend.results = FaultyResults(inner, bad={"t0"})
        done: list[str] = []
        await BrokerActor(backend).handle_batch(_finish_all(deliveries, done))
        dead = await backend.broker.list_dead("default")
        stats = await backend.broker.stats("default")
        states = [await inner.get(f"t{i}") for i in range(1, 4)]
    assert sorted(done) == ["t0", "t1", "t2", "t3"]
    assert [(e.task_id, e.reason) for e in dead] == [("t0", WRITE_ERROR)]
    assert all(s is not None and s.state is stem.TaskState.SUCCEEDED for s in states)
    assert (stats.pending, stats.in_flight) == (0, 0)


async def test_a_publish_the_backend_refuses_fails_only_its_reply() -> None:
    """Of three publishes in one batch, the one whose envelope the backend
    refuses gets that error; the other two are stored and answered."""
    async with open_backend() as backend:
        backend.broker = FaultyBroker(backend.broker, publish={"bad"})
        replies = [Reply[None]() for _ in range(3)]
        batch = [
            Publish(envelopes=(stem.Envelope(id=task_id, name="x"),), reply=reply)
            for task_id, reply in zip(["a", "bad", "b"], replies, strict=True)
        ]
        await BrokerActor(backend).handle_batch(batch)
        got = await backend.broker.claim(["default"], limit=10, lease=30, consumer="t")
        with pytest.raises(ColumnOverflow):
            await replies[1].wait()
        assert await replies[0].wait() is None
        assert await replies[2].wait() is None
    assert sorted(d.task_id for d in got) == ["a", "b"]


async def test_a_hook_failing_on_one_finish_acks_the_others_once(
    autojump_clock,
) -> None:
    """A finish hook that cannot follow one message's meta runs again per
    finish: the innocent deliveries are acked once (never re-run), the
    poison one is dead-lettered as write-error."""
    calls: list[list[str]] = []

    async def hook(finishes: Sequence[Finish]) -> Sequence[stem.Envelope]:
        calls.append([f.delivery.task_id for f in finishes])
        for fin in finishes:
            env = fin.delivery.envelope
            if env is not None and "bogus" in env.meta:
                raise KeyError("k")
        return ()

    async with open_backend() as backend:
        envs = [stem.Envelope(id=f"t{i}", name="x") for i in range(3)]
        envs.append(stem.Envelope(id="poison", name="x", meta={"bogus": True}))
        await backend.broker.publish(envs)
        deliveries = await _claim(backend, 4)
        done: list[str] = []
        await BrokerActor(backend, hooks=[hook]).handle_batch(
            _finish_all(deliveries, done)
        )
        await trio.sleep(60)  # past every lease: nothing comes back
        again = await backend.broker.claim(
            ["default"], limit=10, lease=30, consumer="t"
        )
        dead = await backend.broker.list_dead("default")
    assert again == []
    assert [(e.task_id, e.reason) for e in dead] == [("poison", WRITE_ERROR)]
    assert "finish hook" in dead[0].error.message
    assert calls[0] == ["t0", "t1", "t2", "poison"]
    assert sorted(map(tuple, calls[1:])) == [("poison",), ("t0",), ("t1",), ("t2",)]


async def test_a_bogus_canvas_frame_never_reruns_innocent_tasks(autojump_clock) -> None:
    """A message carrying a canvas frame the hook cannot follow (published
    straight to the broker, past the decoder) is dead-lettered, and each
    innocent task beside it runs exactly once."""
    runs: dict[str, int] = {}

    @stem.task("count")
    async def count(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1

    bogus = {"canvas": {"stack": [{"k": "chord", "id": "c", "i": 0}]}}
    async with stem.Client.in_memory(tasks=[count]) as client:
        envs = [client.build_envelope("count", task_id=f"ok-{i}") for i in range(20)]
        envs.insert(7, stem.Envelope(id="poison", name="count", meta=bogus))
        await client.backend.broker.publish(envs)
        async with client.worker(concurrency=8):
            for i in range(20):
                result = await client.wait_for(f"ok-{i}", timeout=30)
                assert result.state is stem.TaskState.SUCCEEDED
            with trio.fail_after(30):
                while await client.dead_letters("default").count() < 1:
                    await trio.sleep(0.1)
            await trio.sleep(120)  # past every lease
        [entry] = await client.dead_letters("default").list()
    assert entry.task_id == "poison"
    assert entry.reason == WRITE_ERROR
    assert runs == {**{f"ok-{i}": 1 for i in range(20)}, "poison": 1}


async def test_many_refused_retries_among_good_tasks_hold_nothing(
    autojump_clock,
) -> None:
    """With 3 tasks whose retries the backend refuses among 200 good ones at
    concurrency 64, every good task runs once, the 3 are dead-lettered, and
    the worker ends holding no delivery."""
    runs: dict[str, int] = {}

    @stem.task("work", max_retries=2)
    async def work(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1
        if args.get("fail"):
            raise RuntimeError("retry me")

    bad = {"bad-0", "bad-1", "bad-2"}
    async with open_backend() as backend:
        backend.broker = FaultyBroker(backend.broker, nack=bad)
        async with stem.Client(backend=backend, tasks=[work]) as client:
            ids = []
            for i in range(200):
                ids.append(await client.enqueue("work", {"n": i}, task_id=f"good-{i}"))
                if i % 60 == 30:
                    task_id = f"bad-{i // 60}"
                    await client.enqueue("work", {"fail": True}, task_id=task_id)
            async with client.worker(concurrency=64) as worker:
                for task_id in ids:
                    result = await client.wait_for(task_id, timeout=60)
                    assert result.state is stem.TaskState.SUCCEEDED
                with trio.fail_after(60):
                    while await client.dead_letters("default").count() < 3:
                        await trio.sleep(0.1)
                await trio.sleep(5)
                held = worker.worker_statistics().held
            dead = await client.dead_letters("default").list()
    assert held == 0
    assert {e.task_id for e in dead} == bad
    assert {e.reason for e in dead} == {WRITE_ERROR}
    assert all(runs[t] == 1 for t in ids)


async def test_a_crashing_batch_releases_its_deliveries_and_fails_replies(
    monkeypatch,
) -> None:
    """If a batch still crashes, every finish in it is released to its worker
    (its message comes back after its lease) and every reply is failed."""

    async def crash(self: Any, plan: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(_isolate.Isolation, "settle", crash)
    async with open_backend() as backend:
        await backend.broker.publish([stem.Envelope(id="t0", name="x")])
        deliveries = await _claim(backend, 1)
        done: list[str] = []
        reply = Reply[None]()
        batch: list[Any] = _finish_all(deliveries, done)
        batch.append(Publish(envelopes=(stem.Envelope(id="p", name="x"),), reply=reply))
        with pytest.raises(RuntimeError, match="unexpected"):
            await BrokerActor(backend).handle_batch(batch)
        assert reply.done
        assert done == ["t0"]
