"""The default prefetch (prefetch=-1) holds about 20 ms of expected work
beyond the running slots: deep for short tasks, as many as the slots for
long ones (stem/actors/_prefetch.py)."""

from __future__ import annotations

from typing import Any

import trio

import stem
from stem.actors._prefetch import BUFFER, CEILING, AdaptivePrefetch


def test_depth_starts_at_the_slots_and_grows_as_tasks_prove_short() -> None:
    """Before any attempt the prefetch equals the slots; 1 ms attempts on 10
    slots make it 10 x 20 ms / 1 ms = 200, and no-op attempts stop at the
    ceiling."""
    pace = AdaptivePrefetch()
    assert pace.depth(10) == 10
    assert pace.claim_at(10) == 1
    for _ in range(200):
        pace.observe(0.001)
    assert pace.depth(10) == min(CEILING, int(10 * BUFFER / 0.001))
    for _ in range(200):
        pace.observe(0.0)
    assert pace.depth(10) == CEILING
    assert pace.claim_at(10) == (CEILING - 10) // 4


def test_a_long_attempt_shrinks_the_prefetch_at_once_and_short_ones_slowly() -> None:
    """One 1 s attempt after many no-ops halves the estimate toward 1 s, so the
    prefetch falls to the slots; it grows back only over many short ones."""
    pace = AdaptivePrefetch()
    for _ in range(100):
        pace.observe(0.0)
    pace.observe(1.0)
    assert pace.depth(10) == 10
    pace.observe(0.0)
    assert pace.depth(10) == 10
    for _ in range(300):
        pace.observe(0.0)
    assert pace.depth(10) == CEILING


def test_long_tasks_keep_the_prefetch_at_the_slots() -> None:
    """Attempts of 50 ms or more never raise the prefetch above the slots."""
    pace = AdaptivePrefetch()
    for seconds in (0.05, 0.5, 30.0, 0.05):
        pace.observe(seconds)
        assert pace.depth(50) == 50


async def _most_held(sleep: float, count: int) -> int:
    """The most deliveries one worker (2 slots) held while draining ``count``
    tasks that each sleep ``sleep`` seconds."""

    @stem.task("nap")
    async def nap(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        await trio.sleep(sleep)

    most = 0
    async with stem.Client.in_memory(tasks=[nap]) as client:
        ids = [await client.enqueue("nap") for _ in range(count)]
        async with client.worker(concurrency=2) as worker:
            while worker.worker_statistics().processed < count:
                most = max(most, worker.worker_statistics().held)
                await trio.sleep(sleep / 4)
        result = await client.wait_for(ids[-1], timeout=10)
        assert result.state is stem.TaskState.SUCCEEDED
    return most


async def test_worker_holds_more_of_short_tasks_than_of_long(
    autojump_clock: Any,
) -> None:
    """Draining 1 ms tasks, a 2-slot worker holds well beyond twice its slots
    (2 x 20 ms / 1 ms = 40 prefetched); draining 1 s tasks, never more."""
    assert await _most_held(0.001, 300) > 20
    assert await _most_held(1.0, 12) <= 4
