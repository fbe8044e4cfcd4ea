"""Canvas (chains, groups, chords) on the in-memory backend under MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import TaskState
from stem._canvas import CANVAS_TTL
from stem._errors import BrokerUnavailable


def make_tasks(calls: list[str] | None = None) -> list[Any]:
    """add1 (previous + n), sum (of previous), boom (fails), nap, echo."""
    seen = calls if calls is not None else []

    @stem.task("add1")
    async def add1(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        seen.append("add1")
        await trio.sleep(args.get("sleep", 0))
        return int(ctx.previous_result or 0) + int(args.get("n", 1))

    @stem.task("sum")
    async def total(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        seen.append("sum")
        return sum(ctx.previous_result)

    @stem.task("boom")
    async def boom(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        seen.append("boom")
        raise ValueError(args.get("msg", "boom"))

    @stem.task("echo")
    async def echo(ctx: stem.TaskContext, args: dict[str, Any]) -> Any:
        seen.append("echo")
        return {"args": args, "previous": ctx.previous_result}

    return [add1, total, boom, echo]


sig = stem.signature


async def test_chain_of_three_adds_previous_results(autojump_clock: Any) -> None:
    """A chain of three add1 links, each adding 1 to ctx.previous_result, returns 3."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.chain([sig("add1"), sig("add1"), sig("add1")])
        assert await handle.get(timeout=10) == 3
        links = await handle.results()
        assert await handle.state() is TaskState.SUCCEEDED
    assert [r.value for r in links if r is not None] == [1, 2, 3]
    assert handle.kind == "chain" and handle.id == handle.member_ids[-1]


async def test_first_link_sees_no_previous_result(autojump_clock: Any) -> None:
    """ctx.previous_result is None for the first link and for a plain task."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.chain([sig("echo", {"a": 1}), sig("echo")])
        value = await handle.get(timeout=10)
        plain = await client.wait_for(await client.enqueue("echo"), timeout=10)
    assert value["previous"] == {"args": {"a": 1}, "previous": None}
    assert plain.value == {"args": {}, "previous": None}


async def test_group_of_five_returns_results_in_member_order(
    autojump_clock: Any,
) -> None:
    """Five members finishing in reverse order still give their results in member order."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.group(
            [sig("add1", {"n": i, "sleep": 5 - i}) for i in range(5)]
        )
        assert await handle.state() in (TaskState.QUEUED, TaskState.RUNNING)
        assert await handle.get(timeout=60) == [0, 1, 2, 3, 4]
        members = await handle.results()
    assert [m.value for m in members if m is not None] == [0, 1, 2, 3, 4]


async def test_chord_of_ten_sums_member_results(autojump_clock: Any) -> None:
    """A chord of ten add1 members with a sum callback returns the sum, once."""
    calls: list[str] = []
    async with (
        stem.Client.in_memory(tasks=make_tasks(calls)) as client,
        client.worker(concurrency=4),
    ):
        handle = await client.canvas.chord(
            [sig("add1", {"n": i}) for i in range(10)], callback=sig("sum")
        )
        assert await handle.get(timeout=60) == sum(range(10))
        await client.flush()
    assert calls.count("sum") == 1


async def test_chord_with_failing_member_never_runs_callback(
    autojump_clock: Any,
) -> None:
    """A failed member fails the chord with its error; the callback never runs."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        async with client.worker():
            handle = await client.canvas.chord(
                [sig("add1"), sig("boom", {"msg": "member 1 broke"}), sig("add1")],
                callback=sig("sum"),
            )
            with pytest.raises(stem.TaskFailed) as info:
                await handle.get(timeout=60)
            await trio.sleep(5)  # the other members finish meanwhile
            record = await handle.result()
            members = await handle.results()
    assert info.value.error is not None
    assert info.value.error.type == "ValueError"
    assert info.value.error.message == "member 1 broke"
    assert info.value.task_id == handle.member_ids[1]
    assert record is not None and record.state is TaskState.FAILED
    assert record.meta["reason"] == "chord-member-failed"
    assert "sum" not in calls
    assert [m.state for m in members if m is not None] == [
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.SUCCEEDED,
    ]


async def test_chord_member_after_the_counter_expired_fails_the_chord(
    autojump_clock: Any,
) -> None:
    """A member finishing after the chord's counter expired (CANVAS_TTL with
    no other member) is refused: the chord fails once with GroupExpired and
    its callback never runs."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        handle = await client.canvas.chord(
            [sig("add1"), sig("add1", queue="later")], callback=sig("sum")
        )
        async with client.worker(queues=["default"]):
            with trio.fail_after(60):
                while (await client.get(handle.member_ids[0])).state is not (  # type: ignore[union-attr]
                    TaskState.SUCCEEDED
                ):
                    await trio.sleep(0.1)
        await trio.sleep(CANVAS_TTL + 3600)  # no worker takes the other member
        async with client.worker(queues=["later"]):
            with pytest.raises(stem.TaskFailed) as info:
                await handle.get(timeout=600)
            record = await handle.result()
    assert info.value.error is not None
    assert info.value.error.type == "stem.GroupExpired"
    assert info.value.task_id == handle.member_ids[1]
    assert record is not None and record.meta["reason"] == "chord-expired"
    assert "sum" not in calls


async def test_chord_allow_failures_passes_results_and_errors(
    autojump_clock: Any,
) -> None:
    """With allow_failures the callback gets one entry per member: state, value, error."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.chord(
            [sig("add1", {"n": 5}), sig("boom", {"msg": "nope"})],
            callback=sig("echo"),
            allow_failures=True,
        )
        value = await handle.get(timeout=60)
    first, second = value["previous"]
    assert first["state"] == "succeeded" and first["value"] == 5
    assert first["error"] is None
    assert second["state"] == "failed" and second["value"] is None
    assert second["error"]["type"] == "ValueError"
    assert second["error"]["message"] == "nope"
    assert second["task_id"] == handle.member_ids[1]


async def test_chord_on_error_runs_error_callback(autojump_clock: Any) -> None:
    """on_error runs once with the failed member's id, index and error as previous_result."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        async with client.worker():
            handle = await client.canvas.chord(
                [sig("add1"), sig("boom", {"msg": "bad"})],
                callback=sig("sum"),
                on_error=sig("echo", {"alert": "ops"}),
            )
            with pytest.raises(stem.TaskFailed):
                await handle.get(timeout=60)
            await trio.sleep(5)
            await client.flush()
    assert calls.count("echo") == 1 and "sum" not in calls


async def test_on_error_receives_failure_details(autojump_clock: Any) -> None:
    """The error callback's ctx.previous_result names the chord, member and error."""
    seen: list[Any] = []

    @stem.task("alert")
    async def alert(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        seen.append((args, ctx.previous_result))

    async with (
        stem.Client.in_memory(tasks=[*make_tasks(), alert]) as client,
        client.worker(),
    ):
        handle = await client.canvas.chord(
            [sig("boom", {"msg": "m0"})],
            callback=sig("sum"),
            on_error=sig("alert", {"to": "ops"}),
        )
        with pytest.raises(stem.TaskFailed):
            await handle.get(timeout=60)
        await trio.sleep(5)
    [(args, info)] = seen
    assert args == {"to": "ops"}
    assert info["canvas_id"] == handle.id
    assert info["task_id"] == handle.member_ids[0] and info["index"] == 0
    assert info["error"]["message"] == "m0"


async def test_failed_link_aborts_the_rest_of_its_chain(autojump_clock: Any) -> None:
    """A permanently failed link stops its chain: later links are REVOKED chain-aborted."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        async with client.worker():
            handle = await client.canvas.chain(
                [sig("add1"), sig("boom", {"msg": "link 2"}), sig("add1"), sig("sum")]
            )
            with pytest.raises(stem.TaskFailed) as info:
                await handle.get(timeout=60)
            links = await handle.results()
    assert calls == ["add1", "boom"]
    assert info.value.error is not None and info.value.error.message == "link 2"
    assert info.value.task_id == handle.member_ids[1]
    states = [r.state for r in links if r is not None]
    assert states == [
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.REVOKED,
        TaskState.REVOKED,
    ]
    assert all(r.meta["reason"] == "chain-aborted" for r in links[2:] if r)


async def test_chain_containing_a_group(autojump_clock: Any) -> None:
    """add1 -> group(add1, add1 n=10) -> sum: the group gets 1, the sum gets [2, 11]."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.chain(
            [
                sig("add1"),
                stem.group([sig("add1"), sig("add1", {"n": 10})]),
                sig("sum"),
            ]
        )
        assert await handle.get(timeout=60) == 13
        links = await handle.results()
    assert [r.value for r in links if r is not None] == [1, [2, 11], 13]


async def test_chord_inside_a_chain(autojump_clock: Any) -> None:
    """A chord in the middle of a chain gets the previous result and feeds the next link."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.chain(
            [
                sig("add1", {"n": 2}),
                stem.chord([sig("add1"), sig("add1")], callback=sig("sum")),
                sig("add1", {"n": 100}),
            ]
        )
        assert await handle.get(timeout=60) == 106


async def test_group_of_chains(autojump_clock: Any) -> None:
    """Each chain of a group runs its own links; the group lists their last results."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.group(
            [
                stem.chain([sig("add1", {"n": i}), sig("add1"), sig("add1")])
                for i in range(4)
            ]
        )
        assert await handle.get(timeout=60) == [2, 3, 4, 5]


async def test_chord_of_chains_and_groups(autojump_clock: Any) -> None:
    """A chord over a chain and a nested group passes their results in member order."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client, client.worker():
        handle = await client.canvas.chord(
            [
                stem.chain([sig("add1"), sig("add1")]),
                stem.group([sig("add1", {"n": 7}), sig("add1", {"n": 8})]),
            ],
            callback=sig("echo"),
        )
        value = await handle.get(timeout=60)
    assert value["previous"] == [2, [7, 8]]


async def test_failure_inside_a_nested_group_fails_the_outer_chain(
    autojump_clock: Any,
) -> None:
    """A failing member of a group inside a chain fails the group and aborts the chain."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        async with client.worker():
            handle = await client.canvas.chain(
                [stem.group([sig("add1"), sig("boom", {"msg": "deep"})]), sig("sum")]
            )
            with pytest.raises(stem.TaskFailed) as info:
                await handle.get(timeout=60)
            group_record = (await handle.results())[0]
    assert info.value.error is not None and info.value.error.message == "deep"
    assert group_record is not None and group_record.state is TaskState.FAILED
    assert "sum" not in calls


async def test_member_retried_then_succeeding_counts_once(
    autojump_clock: Any,
) -> None:
    """A member failing once then succeeding is counted once; the callback runs once."""
    calls: list[str] = []
    attempts: list[int] = []

    @stem.task("flaky", max_retries=2)
    async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return 10

    async with (
        stem.Client.in_memory(tasks=[*make_tasks(calls), flaky]) as client,
        client.worker(),
    ):
        handle = await client.canvas.chord(
            [sig("flaky"), sig("add1"), sig("add1")], callback=sig("sum")
        )
        assert await handle.get(timeout=600) == 12
        await client.flush()
    assert attempts == [1, 2]
    assert calls.count("sum") == 1


async def test_short_member_result_ttl_still_runs_the_callback(
    autojump_clock: Any,
) -> None:
    """Members whose results expire at once still feed the callback (the join keeps them)."""

    @stem.task("fleeting", result_ttl=0)
    async def fleeting(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        await trio.sleep(args["sleep"])
        return int(args["sleep"])

    async with (
        stem.Client.in_memory(tasks=[*make_tasks(), fleeting]) as client,
        client.worker(),
    ):
        handle = await client.canvas.chord(
            [sig("fleeting", {"sleep": s}) for s in (3, 1, 2)], callback=sig("sum")
        )
        assert await handle.get(timeout=60) == 6


@pytest.mark.parametrize("fail_at", ["publish", "claim"])
async def test_worker_dying_mid_join_still_fires_callback_once(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """If the batch that records the last member cannot publish the callback (or
    take the claim), the member comes back after its lease and the callback
    still runs exactly once."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        broker, locks = client.backend.broker, client.backend.locks
        real_publish, real_acquire = broker.publish, locks.acquire
        failures = {"left": 6}

        async def failing_publish(envelopes: Any) -> None:
            if any(e.name == "sum" for e in envelopes) and failures["left"] > 0:
                failures["left"] -= 1
                raise BrokerUnavailable("simulated crash before the callback")
            await real_publish(envelopes)

        async def failing_acquire(name: str, owner: str, *, ttl: float) -> bool:
            if failures["left"] > 0:
                failures["left"] = 0
                raise BrokerUnavailable("simulated crash before the claim")
            return await real_acquire(name, owner, ttl=ttl)

        if fail_at == "publish":
            monkeypatch.setattr(broker, "publish", failing_publish)
        else:
            monkeypatch.setattr(locks, "acquire", failing_acquire)
        async with client.worker(concurrency=3):
            handle = await client.canvas.chord(
                [sig("add1", {"n": i}) for i in range(3)], callback=sig("sum")
            )
            assert await handle.get(timeout=600) == 3
            await trio.sleep(120)  # any further redelivery would have run by now
            await client.flush()
    assert failures["left"] == 0
    assert calls.count("sum") == 1
    assert calls.count("add1") > 3  # the unacked members ran again


async def test_redelivered_finisher_does_not_publish_callback_twice(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last member's ack fails after the callback was published: the member
    comes back, re-records idempotently and publishes nothing new."""
    calls: list[str] = []
    async with stem.Client.in_memory(tasks=make_tasks(calls)) as client:
        broker = client.backend.broker
        real_ack = broker.ack
        failures = {"left": 6}

        async def failing_ack(deliveries: Any) -> None:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise BrokerUnavailable("simulated crash before the ack")
            await real_ack(deliveries)

        monkeypatch.setattr(broker, "ack", failing_ack)
        async with client.worker(concurrency=1):
            handle = await client.canvas.chord(
                [sig("add1"), sig("add1")], callback=sig("sum")
            )
            assert await handle.get(timeout=600) == 2
            await trio.sleep(120)
            await client.flush()
    assert calls.count("sum") == 1
    assert calls.count("add1") > 2


async def test_unknown_task_anywhere_in_the_graph_enqueues_nothing(
    autojump_clock: Any,
) -> None:
    """An unregistered name deep in a chord callback fails the submit; nothing is queued."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client:
        with pytest.raises(stem.UnknownTask, match="nope"):
            await client.canvas.chain(
                [
                    sig("add1"),
                    stem.chord([sig("add1")], callback=sig("nope")),
                ]
            )
        stats = await client.queue_stats("default")
    assert (stats.pending, stats.delayed, stats.in_flight) == (0, 0, 0)


async def test_unencodable_args_in_a_later_link_enqueue_nothing(
    autojump_clock: Any,
) -> None:
    """Args that cannot be encoded, even in the last link, fail the submit with the path."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client:
        with pytest.raises(stem.EncodeError, match=r"args\['x'\]"):
            await client.canvas.chain([sig("add1"), sig("add1", {"x": object()})])
        with pytest.raises(stem.EncodeError):
            await client.canvas.group([sig("add1", {"n": float("nan")})])
        stats = await client.queue_stats("default")
    assert (stats.pending, stats.delayed, stats.in_flight) == (0, 0, 0)


def test_signature_rejects_unknown_and_invalid_options() -> None:
    """Unknown option names and invalid values raise at construction."""
    with pytest.raises(TypeError, match="unknown signature option"):
        stem.signature("add1", retries=3)
    with pytest.raises(TypeError, match="get their ids"):
        stem.signature("add1", task_id="x")
    with pytest.raises(ValueError, match="priority"):
        stem.signature("add1", priority=12)
    with pytest.raises(ValueError, match="queue"):
        stem.signature("add1", queue="bad queue")
    with pytest.raises(ValueError, match="countdown"):
        stem.signature("add1", countdown=-1)
    with pytest.raises(stem.EncodeError):
        stem.signature("add1", args=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        stem.group([])
    with pytest.raises(TypeError, match="callback"):
        stem.chord([stem.signature("a")], callback="sum")  # type: ignore[arg-type]
    good = stem.signature("add1", {"n": 1}, queue="q", priority=3, countdown=2)
    assert good.options == {"queue": "q", "priority": 3, "countdown": 2.0}


async def test_signature_options_apply_to_every_link(autojump_clock: Any) -> None:
    """A link's countdown and queue apply when that link is enqueued."""
    starts: list[tuple[str, float]] = []

    @stem.task("stamp")
    async def stamp(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        starts.append((ctx.queue, trio.current_time()))

    async with (
        stem.Client.in_memory(tasks=[stamp]) as client,
        client.worker(queues=["default", "slow"]),
    ):
        t0 = trio.current_time()
        handle = await client.canvas.chain(
            [sig("stamp"), sig("stamp", queue="slow", countdown=30)]
        )
        await handle.get(timeout=120)
    assert [q for q, _ in starts] == ["default", "slow"]
    assert starts[1][1] - t0 == pytest.approx(30, abs=1.5)


async def test_handle_rebuilt_from_id_waits_on_the_same_record(
    autojump_clock: Any,
) -> None:
    """client.canvas.handle(id) works from the id alone (as in another process)."""
    async with stem.Client.in_memory(tasks=make_tasks()) as client:
        handle = await client.canvas.chord(
            [sig("add1"), sig("add1")], callback=sig("sum")
        )
        other = client.canvas.handle(handle.id)
        assert await other.state() is TaskState.QUEUED
        with pytest.raises(stem.WaitTimeout):
            await other.get(timeout=1)
        async with client.worker():
            assert await other.get(timeout=60) == 2
