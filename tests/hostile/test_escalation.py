"""A worker that keeps crashing is logged each time; once its supervisor
gives up, the client (and so ``stem worker``) ends instead of running on
with no worker."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import stem
from stem.actors import _worker


@stem.task("t")
async def t(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    """Never runs."""


async def test_a_crash_looping_worker_ends_the_client(
    autojump_clock, monkeypatch, caplog
) -> None:
    """Every crash is logged with its traceback, the escalation is logged,
    and the client block ends with the error as soon as the supervisor gives
    up (no grace period spent waiting for a worker that is gone)."""

    async def crash(self: Any, mailbox: Any) -> None:
        await trio.sleep(0.01)
        raise RuntimeError("worker bug")

    monkeypatch.setattr(_worker.Worker, "_serve_mailbox", crash)
    caplog.set_level(logging.WARNING, logger="stem.actors.supervisor")
    start = trio.current_time()
    with pytest.raises(BaseException) as info:  # noqa: PT011 (an exception group)
        async with stem.Client.in_memory(tasks=[t]) as client:
            async with client.worker(concurrency=2, grace_period=30):
                await trio.sleep(3600)
    elapsed = trio.current_time() - start
    assert "worker bug" in repr(info.value)
    assert elapsed < 40, f"the client waited {elapsed:.0f} s for a dead worker"
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) >= 10
    assert all(r.exc_info for r in crashes)
    assert any("gave up" in r.getMessage() for r in caplog.records)
