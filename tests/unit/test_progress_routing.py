"""Task progress (``ctx.progress``: throttled writes through the BrokerActor,
the ``task_progress`` signal, ``stem result``, canvas handles) and routing
rules (``stem.App(routes=...)``, precedence, validation, ``stem tasks ls``)
on the in-memory backend; tests/integration/test_progress_routing_backends.py
runs them on the other backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

import stem
from stem import TaskState
from stem.cli import main
from tests import progress_app

# -- progress -----------------------------------------------------------------


def test_progress_values_are_checked() -> None:
    """A report with a negative, non-numeric or non-finite count, a zero
    total or info that is not JSON is refused when it is made."""
    with pytest.raises(ValueError, match="done"):
        stem.Progress(done=-1)
    with pytest.raises(TypeError, match="done"):
        stem.Progress(done="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total"):
        stem.Progress(done=1, total=0)
    with pytest.raises(ValueError, match="done"):
        stem.Progress(done=float("nan"))
    with pytest.raises(stem.EncodeError, match="JSON"):
        stem.Progress(done=1, info={"x": object()})
    with pytest.raises(stem.EncodeError, match="4096"):
        stem.Progress(done=1, info="x" * 5000)
    assert stem.Progress(done=15, total=10).fraction == 1.0
    assert stem.Progress(done=1, total=4, info="go").describe() == '1/4 (25%) "go"'


def test_a_stored_progress_that_does_not_decode_is_a_decode_error() -> None:
    """A result record whose progress field is hostile raises DecodeError
    saying so (it is never half-read)."""
    from stem._codec import decode_result

    base = {"task_id": "t", "state": "running"}
    for bad in ([1], {"done": "x"}, {"done": -3}, {"done": 1, "at": "now"}):
        with pytest.raises(stem.DecodeError, match="progress"):
            decode_result(json.dumps({**base, "progress": bad}))


async def test_a_tight_loop_writes_a_bounded_number_of_times(
    autojump_clock: Any,
) -> None:
    """10 000 reports over 5 simulated seconds are stored about once a
    second (not 10 000 times); the last report lands while the task still
    runs, and the final record keeps it."""
    seen: list[stem.Progress] = []

    @stem.task("loop")
    async def loop(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        for i in range(1, 10_001):
            ctx.progress(i, 10_000)
            if i % 100 == 0:
                await trio.sleep(0.05)
        await trio.sleep(30)  # the last report must land meanwhile
        return "done"

    app = stem.App([loop])
    app.signals.task_progress.connect(lambda e: seen.append(e.progress))
    async with stem.Client.in_memory(app=app) as client, client.worker():
        task_id = await client.enqueue("loop")
        await trio.sleep(10)
        running = await client.get(task_id)
        assert running is not None
        assert running.state is TaskState.RUNNING
        assert running.progress is not None
        assert (running.progress.done, running.progress.total) == (10_000, 10_000)
        assert running.meta.get("worker_id")  # the RUNNING record is kept whole
        final = await client.wait_for(task_id, timeout=60)
    assert 5 <= len(seen) <= 8, len(seen)
    assert seen[0].done == 1  # the first report is written at once
    assert seen[-1].done == 10_000
    assert final.state is TaskState.SUCCEEDED
    assert final.progress is not None
    assert final.progress.done == 10_000


async def test_sync_handlers_report_from_their_thread() -> None:
    """A sync (threaded) handler reports progress too; a failed attempt's
    record keeps where it stopped."""

    @stem.task("sync.steps")
    def steps(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ctx.progress(2, 5, info="halfway")
        raise RuntimeError("stopped at 2")

    async with stem.Client.in_memory(tasks=[steps]) as client, client.worker():
        result = await client.wait_for(await client.enqueue("sync.steps"), timeout=30)
    assert result.state is TaskState.FAILED
    assert result.progress is not None
    assert (result.progress.done, result.progress.total) == (2, 5)
    assert result.progress.info == "halfway"


async def test_a_bad_report_fails_the_attempt_not_the_worker(
    autojump_clock: Any,
) -> None:
    """A report with bad values raises in the task (its own error); the
    worker goes on running the next task."""

    @stem.task("bad.progress")
    async def bad(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ctx.progress(-1)

    @stem.task("ok")
    async def ok(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        return 1

    async with stem.Client.in_memory(tasks=[bad, ok]) as client, client.worker():
        failed = await client.wait_for(await client.enqueue("bad.progress"), 30)
        fine = await client.wait_for(await client.enqueue("ok"), 30)
    assert failed.state is TaskState.FAILED
    assert failed.error is not None
    assert "done" in failed.error.message
    assert fine.state is TaskState.SUCCEEDED


async def test_canvas_handles_count_finished_members(autojump_clock: Any) -> None:
    """A group's handle reports its finished members out of all; each
    member's record carries its own progress."""
    async with (
        stem.Client.in_memory(app=progress_app.app) as client,
        client.worker(queues=["slow"]),
    ):
        handle = await client.canvas.group(
            [stem.signature("reports.build", {"steps": n}) for n in (2, 4)]
        )
        before = await handle.progress()
        assert before is not None
        assert (before.done, before.total) == (0, 2)
        assert await handle.get(timeout=30) == [2, 4]
        after = await handle.progress()
        members = await handle.results()
        rebuilt = await client.canvas.handle(handle.id).progress()
    assert rebuilt is None
    assert after is not None
    assert (after.done, after.total, after.fraction) == (2, 2, 1.0)
    assert [m.progress.done for m in members if m and m.progress] == [2, 4]


def test_stem_result_shows_progress(tmp_path: Path) -> None:
    """`stem result` prints the stored progress (and --json has it)."""
    url = f"sqlite:///{tmp_path}/p.db"

    async def go() -> str:
        async with (
            stem.Client.from_url(url, app=progress_app.app) as client,
            client.worker(queues=["slow"], claim_wait=0.05),
        ):
            task_id = await client.enqueue("reports.build", {"steps": 4})
            await client.wait_for(task_id, timeout=20)
            return task_id

    task_id = trio.run(go)
    runner = CliRunner()
    text = runner.invoke(main, ["result", task_id, "--url", url])
    assert text.exit_code == 0, text.output
    assert 'progress: 4/4 (100%) {"step":4}' in text.stdout
    as_json = runner.invoke(main, ["result", task_id, "--url", url, "--json"])
    record = json.loads(as_json.stdout)
    assert record["progress"]["done"] == 4
    assert record["progress"]["info"] == {"step": 4}


# -- routing ------------------------------------------------------------------


async def test_routing_precedence() -> None:
    """enqueue's queue= beats the task's own queue, which beats the routes,
    which beat "default"; the first matching route wins; routes also apply
    to names the app does not register."""
    app = stem.App(
        [progress_app.build, progress_app.urgent, progress_app.send],
        routes={"reports.summary": "summaries", "reports.*": "slow", "*.send": "x"},
    )
    assert app.queue_for("reports.build") == "slow"
    assert app.queue_for("reports.urgent") == "fast"  # its own option
    assert app.queue_for("reports.summary") == "summaries"  # first match
    assert app.queue_for("mail.send") == "x"
    assert app.queue_for("other") == "default"
    async with stem.Client.in_memory(app=app) as client:
        routed = await client.enqueue("reports.build")
        own = await client.enqueue("reports.urgent")
        explicit = await client.enqueue("reports.build", queue="now")
        unregistered = await client.enqueue("reports.summary")
        plain = await client.enqueue("other")
        queues = [
            (await client.get(t)).queue  # type: ignore[union-attr]
            for t in (routed, own, explicit, unregistered, plain)
        ]
        chained = await client.canvas.chain(
            [stem.signature("reports.build"), stem.signature("mail.send")]
        )
        first = await client.get(chained.member_ids[0])
    assert queues == ["slow", "fast", "now", "summaries", "default"]
    assert first is not None
    assert first.queue == "slow"


@pytest.mark.parametrize(
    ("routes", "error", "match"),
    [
        (["reports.*"], TypeError, "mapping"),
        ({"": "slow"}, ValueError, "glob"),
        ({3: "slow"}, ValueError, "glob"),
        ({"a\nb": "slow"}, ValueError, "glob"),
        ({"reports.*": "bad queue"}, ValueError, r"routes\['reports.\*'\]"),
        ({"reports.*": None}, ValueError, "queue name"),
    ],
)
def test_invalid_routes_are_refused_at_construction(
    routes: Any, error: type[Exception], match: str
) -> None:
    """A route table that is not a mapping of glob to valid queue name
    raises when the App is built, saying what was expected."""
    with pytest.raises(error, match=match):
        stem.App(routes=routes)


def test_tasks_ls_shows_the_resolved_queue() -> None:
    """`stem tasks ls` shows where each task's calls land after routing."""
    runner = CliRunner()
    result = runner.invoke(
        main, ["tasks", "ls", "--app", "tests.progress_app:app", "--json"]
    )
    assert result.exit_code == 0, result.output
    queues = {r["name"]: r["queue"] for r in json.loads(result.stdout)}
    assert queues == {
        "mail.send": "mail",
        "reports.build": "slow",
        "reports.urgent": "fast",
    }
    table = runner.invoke(main, ["tasks", "ls", "--app", "tests.progress_app:app"])
    assert "slow" in table.stdout
