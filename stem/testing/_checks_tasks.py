"""Contract checks for task listing (``backend.results`` as a
:class:`stem.contracts.TaskQuery`).

A result backend without it skips them with the reason printed. See
:mod:`stem.testing._checks_broker` for the conventions.
"""

from __future__ import annotations

import stem
from stem import TaskResult, TaskState
from stem.contracts import TaskQuery

from ._harness import Harness, raises
from ._skip import skip


def _query(h: Harness) -> TaskQuery:
    results = h.backend.results
    if not isinstance(results, TaskQuery):
        skip(
            f"backend {h.backend.capabilities.name!r}'s result backend does not "
            "list tasks (no TaskQuery): the dashboard shows no task list"
        )
    return results


def _record(n: int, state: TaskState, *, queue: str, name: str) -> TaskResult:
    return TaskResult(
        task_id=f"task-{n:03d}",
        state=state,
        name=name,
        queue=queue,
        attempt=1,
        updated_at=stem.now(),
    )


async def _store(h: Harness) -> list[TaskResult]:
    """12 records a second apart: states cycle, queues alternate, every
    third is named ``b``; the newest last."""
    states = [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.QUEUED]
    stored = []
    for n in range(12):
        record = _record(
            n,
            states[n % 3],
            queue="even" if n % 2 == 0 else "odd",
            name="b" if n % 3 == 0 else "a",
        )
        assert await h.results.set_state([record]) == [True]
        stored.append(record)
        await h.advance(1.0)
    return stored


async def check_tasks_listed_newest_first_in_pages(h: Harness) -> None:
    """list_tasks returns records newest first, ``limit`` at a time, and the
    cursor of each page leads through every record exactly once."""
    query = _query(h)
    stored = await _store(h)
    newest_first = [r.task_id for r in reversed(stored)]
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = await query.list_tasks(limit=5, before=before)
        assert len(page.results) <= 5
        seen += [r.task_id for r in page.results]
        pages += 1
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == newest_first
    assert pages == 3
    first = (await query.list_tasks(limit=1)).results[0]
    assert (first.task_id, first.state, first.queue, first.name) == (
        "task-011",
        TaskState.QUEUED,
        "odd",
        "a",
    )


async def check_tasks_filtered(h: Harness) -> None:
    """Filters on state, queue and name combine; a record whose state
    changes moves to the top and out of its old state's list."""
    query = _query(h)
    stored = await _store(h)
    failed = await query.list_tasks(state="failed", limit=50)
    assert [r.task_id for r in failed.results] == [
        r.task_id for r in reversed(stored) if r.state is TaskState.FAILED
    ]
    both = await query.list_tasks(queue="even", name="b", limit=50)
    assert [r.task_id for r in both.results] == ["task-006", "task-000"]
    three = await query.list_tasks(state="succeeded", queue="odd", limit=50)
    assert [r.task_id for r in three.results] == ["task-009", "task-003"]
    assert (await query.list_tasks(name="missing")).results == ()
    moved = _record(2, TaskState.SUCCEEDED, queue="even", name="a")
    assert await h.results.set_state([moved]) == [True]
    top = await query.list_tasks(limit=1)
    assert top.results[0].task_id == "task-002"
    queued = await query.list_tasks(state="queued", limit=50)
    assert "task-002" not in [r.task_id for r in queued.results]


async def check_tasks_expired_not_listed(h: Harness) -> None:
    """A record past its ttl is not listed."""
    query = _query(h)
    short = _record(1, TaskState.SUCCEEDED, queue="q", name="n")
    await h.results.set_state([short], ttl=5.0)
    kept = TaskResult(
        task_id="task-002",
        state=TaskState.SUCCEEDED,
        name="n",
        queue="q",
        updated_at=stem.now(),
    )
    await h.results.set_state([kept])
    assert len((await query.list_tasks()).results) == 2
    await h.advance(6.0)
    assert [r.task_id for r in (await query.list_tasks()).results] == ["task-002"]


async def check_tasks_finished_counts(h: Harness) -> None:
    """finished_counts counts terminal records by bucket and state, from
    ``since`` on (to the minute)."""
    query = _query(h)
    await h.advance(120.0 - stem.now() % 60.0)  # start of a minute
    start = stem.now()
    await _store(h)  # 12 records over 12 s: 4 succeeded, 4 failed
    counts = await query.finished_counts(since=start - 60, bucket=60.0)
    assert counts == {start: {"succeeded": 4, "failed": 4}}
    assert await query.finished_counts(since=start + 60, bucket=60.0) == {}


async def check_tasks_bad_arguments(h: Harness) -> None:
    """An unknown state or a cursor that does not parse is a ValueError;
    limits are kept within 1..MAX_LIMIT."""
    query = _query(h)
    with raises(ValueError):
        await query.list_tasks(state="exploded")
    with raises(ValueError):
        await query.list_tasks(before="not a cursor")
    await _store(h)
    assert len((await query.list_tasks(limit=0)).results) == 1
    assert len((await query.list_tasks(limit=10_000)).results) == 12
