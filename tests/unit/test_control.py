"""Remote control over the broadcast channel: every live worker answers."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem import TaskState


@stem.task("ctl.sleep")
async def sleeper(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    await trio.sleep(args.get("s", 3600))
    return "woke"


@stem.task("ctl.quick", queue="q")
async def quick(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return 1


TASKS = [sleeper, quick]


async def test_ping_reaches_every_live_worker(autojump_clock: Any) -> None:
    """ping collects one reply from each of three workers."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(worker_id="w1"),
        client.worker(worker_id="w2"),
        client.worker(worker_id="w3"),
    ):
        t0 = trio.current_time()
        replies = await client.control.ping(timeout=5)
        waited = trio.current_time() - t0
    assert [r.worker_id for r in replies] == ["w1", "w2", "w3"]
    assert all(r.ok and r.command == "ping" for r in replies)
    assert waited < 1  # returns once every live worker answered


async def test_destination_limits_who_answers(autojump_clock: Any) -> None:
    """A request for one worker id is answered by that worker only."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(worker_id="w1"),
        client.worker(worker_id="w2"),
    ):
        replies = await client.control.ping(destination=["w2"])
    assert [r.worker_id for r in replies] == ["w2"]


async def test_stats_and_active_describe_each_worker(autojump_clock: Any) -> None:
    """stats gives counters and slots; active lists the running tasks."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(worker_id="w1", concurrency=3),
    ):
        task_id = await client.enqueue("ctl.sleep")
        await trio.sleep(1)
        [stats] = await client.control.stats()
        [active] = await client.control.active()
    assert stats.data["concurrency"] == 3
    assert stats.data["slots"] == 3
    assert stats.data["active"] == 1
    assert stats.data["queues"] == ["default"]
    assert [t["task_id"] for t in active.data["tasks"]] == [task_id]
    assert active.data["tasks"][0]["name"] == "ctl.sleep"


async def test_revoke_terminates_where_the_task_runs(autojump_clock: Any) -> None:
    """control.revoke(terminate=True) cancels the task on the worker running it."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(worker_id="w1"),
        client.worker(worker_id="w2"),
    ):
        task_id = await client.enqueue("ctl.sleep")
        await trio.sleep(1)
        replies = await client.control.revoke(task_id, terminate=True)
        result = await client.wait_for(task_id, timeout=5)
    assert sorted(r.data["terminated"] for r in replies) == [False, True]
    assert result.state is TaskState.REVOKED


async def test_pause_and_resume_a_queue(autojump_clock: Any) -> None:
    """A paused queue is not consumed until it is resumed."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(queues=["q"], worker_id="w1") as worker,
    ):
        [paused] = await client.control.pause("q")
        assert paused.data == {"queue": "q", "changed": True}
        await trio.sleep(2)  # let a claim already waiting run out
        task_id = await client.enqueue("ctl.quick")
        await trio.sleep(30)
        assert (await client.get(task_id)).state is TaskState.QUEUED  # type: ignore[union-attr]
        assert worker.worker_statistics().paused == ("q",)
        [resumed] = await client.control.resume("q")
        result = await client.wait_for(task_id, timeout=10)
    assert resumed.data["changed"] is True
    assert result.state is TaskState.SUCCEEDED


async def test_pausing_an_unknown_queue_changes_nothing(autojump_clock: Any) -> None:
    """Pausing a queue the worker does not consume reports changed=False."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(worker_id="w1"),
    ):
        [reply] = await client.control.pause("elsewhere")
    assert reply.data["changed"] is False


async def test_warm_shutdown_lets_the_running_task_finish(autojump_clock: Any) -> None:
    """shutdown("warm") stops the worker after its running task completes."""
    async with stem.Client.in_memory(tasks=TASKS) as client:
        async with client.worker(worker_id="w1"):
            task_id = await client.enqueue("ctl.sleep", {"s": 5})
            await trio.sleep(1)
            [reply] = await client.control.shutdown("warm")
            result = await client.wait_for(task_id, timeout=30)
            await trio.sleep(1)
            assert await client.workers() == []
    assert reply.data == {"mode": "warm"}
    assert result.state is TaskState.SUCCEEDED


async def test_soft_shutdown_hands_the_running_task_back(autojump_clock: Any) -> None:
    """shutdown("soft") cancels the running task and hands it back to the queue."""
    async with stem.Client.in_memory(tasks=TASKS) as client:
        async with client.worker(worker_id="w1"):
            task_id = await client.enqueue("ctl.sleep", {"s": 60})
            await trio.sleep(1)
            await client.control.shutdown("soft")
            await trio.sleep(1)
            stats = await client.queue_stats()
            assert (await client.get(task_id)).state is TaskState.QUEUED  # type: ignore[union-attr]
        assert stats.pending == 1
        async with client.worker():
            result = await client.wait_for(task_id, timeout=120)
    assert result.state is TaskState.SUCCEEDED


async def test_hard_shutdown_stops_at_once(autojump_clock: Any) -> None:
    """shutdown("hard") stops the worker now; its task is handed back."""
    async with stem.Client.in_memory(tasks=TASKS) as client:
        async with client.worker(worker_id="w1", grace_period=600):
            task_id = await client.enqueue("ctl.sleep", {"s": 60})
            await trio.sleep(1)
            t0 = trio.current_time()
            await client.control.shutdown("hard")
            while await client.workers():
                await trio.sleep(0.01)
            assert trio.current_time() - t0 < 1
        assert (await client.queue_stats()).pending == 1
        assert (await client.get(task_id)).state is not TaskState.SUCCEEDED  # type: ignore[union-attr]


async def test_control_signals_are_emitted(autojump_clock: Any) -> None:
    """Each request emits control_received then control_completed on the worker."""
    seen: list[tuple[str, str, str]] = []
    app = stem.App(TASKS)
    app.signals.control_received.connect(
        lambda e: seen.append((e.signal, e.command, e.worker_id))
    )
    app.signals.control_completed.connect(
        lambda e: seen.append((e.signal, e.command, e.worker_id))
    )
    async with stem.Client.in_memory(app=app) as client:
        async with client.worker(worker_id="w1"):
            await client.control.ping()
            await trio.sleep(1)
    assert seen == [
        ("control_received", "ping", "w1"),
        ("control_completed", "ping", "w1"),
    ]


async def test_bad_requests_are_refused(autojump_clock: Any) -> None:
    """Unknown commands and modes raise at the client; bad args get ok=False."""
    async with (
        stem.Client.in_memory(tasks=TASKS) as client,
        client.worker(worker_id="w1"),
    ):
        with pytest.raises(ValueError, match="unknown command"):
            await client.control.broadcast("reboot")
        with pytest.raises(ValueError, match="shutdown mode"):
            await client.control.shutdown("gentle")
        [reply] = await client.control.broadcast("pause", {"queue": ""})
    assert reply.ok is False
    assert reply.error is not None and "queue" in reply.error


async def test_no_workers_means_no_replies(autojump_clock: Any) -> None:
    """With no live worker, a request returns an empty list after its timeout."""
    async with stem.Client.in_memory(tasks=TASKS) as client:
        assert await client.control.ping(timeout=0.5) == []


# -- command line ---------------------------------------------------------------


def _invoke(*args: str) -> Any:
    from click.testing import CliRunner

    from stem.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def test_cli_inspect_and_control_against_a_live_worker(tmp_path: Any) -> None:
    """`stem inspect ping|stats|active` and `stem control pause|resume|revoke|
    shutdown` reach a worker running on the same sqlite file."""
    import json

    url = f"sqlite:///{tmp_path}/c.db"

    async def cli(*args: str) -> Any:
        return await trio.to_thread.run_sync(_invoke, *args, "--url", url)

    async with stem.Client.from_url(url, tasks=TASKS) as client:
        async with client.worker(worker_id="w1", claim_wait=0.05):
            with trio.fail_after(60):
                task_id = await client.enqueue("ctl.sleep")
                while not (await client.control.active())[0].data["tasks"]:
                    await trio.sleep(0.05)
                ping = await cli("inspect", "ping", "--json")
                assert ping.exit_code == 0, ping.output
                assert [r["worker_id"] for r in json.loads(ping.stdout)] == ["w1"]
                stats = await cli("inspect", "stats")
                assert stats.exit_code == 0 and "w1" in stats.stdout
                active = json.loads((await cli("inspect", "active", "--json")).stdout)
                assert active[0]["data"]["tasks"][0]["task_id"] == task_id

                paused = await cli("control", "pause", "q", "--json")
                assert json.loads(paused.stdout)[0]["data"]["changed"] is False
                paused = await cli("control", "pause", "default")
                assert paused.exit_code == 0 and "w1" in paused.stdout
                resumed = await cli("control", "resume", "default", "--json")
                assert json.loads(resumed.stdout)[0]["data"]["changed"] is True

                revoked = await cli("control", "revoke", task_id, "--terminate")
                assert revoked.exit_code == 0
                assert "told 1 live worker" in revoked.stdout
                result = await client.wait_for(task_id, timeout=10)
                assert result.state is TaskState.REVOKED

                refused = await cli("control", "shutdown")
                assert refused.exit_code == 1 and "--yes" in refused.stderr
                down = await cli("control", "shutdown", "--mode", "soft", "--yes")
                assert down.exit_code == 0 and "w1: soft shutdown" in down.stdout
                while await client.workers():
                    await trio.sleep(0.05)
    nobody = await trio.to_thread.run_sync(
        _invoke, "inspect", "ping", "--timeout", "0.2", "--url", url
    )
    assert nobody.exit_code == 1
    assert "No worker replied" in nobody.stdout


@pytest.mark.parametrize("name", ["sqlite", "redis", "postgres"])
async def test_every_worker_answers_on_each_backend(
    name: str, request: pytest.FixtureRequest
) -> None:
    """On every backend with broadcast, ping reaches both workers and a
    terminate order reaches the running task at once."""
    factory = request.getfixturevalue(f"{name}_backend_factory")
    async with factory() as backend:
        async with (
            stem.Client(backend=backend, tasks=TASKS) as client,
            client.worker(worker_id="w1", claim_wait=0.05),
            client.worker(worker_id="w2", claim_wait=0.05),
        ):
            with trio.fail_after(30):
                replies = await client.control.ping(timeout=5)
                task_id = await client.enqueue("ctl.sleep")
                while not any(r.data["tasks"] for r in await client.control.active()):
                    await trio.sleep(0.05)
                await client.revoke(task_id, terminate=True)
                result = await client.wait_for(task_id)
    assert [r.worker_id for r in replies] == ["w1", "w2"]
    assert result.state is TaskState.REVOKED
