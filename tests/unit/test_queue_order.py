"""`--queue-order`: round-robin shares the claims between a worker's queues;
priority claims from a later queue only when the earlier ones are empty."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem._workerconfig import WorkerConfig
from tests.cli_process import one_line_error, run_stem

ORDER: list[str] = []


@stem.task("order.job")
async def job(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    ORDER.append(args["tag"])
    if args.get("then"):  # publish a high task while low ones still wait
        await ctx.enqueue("order.job", {"tag": args["then"]}, queue="high")
    await trio.sleep(1)


async def run_order(order: str, tasks: list[tuple[str, dict[str, Any]]]) -> list[str]:
    ORDER.clear()
    async with stem.Client.in_memory(tasks=[job]) as client:
        ids = [await client.enqueue("order.job", args, queue=q) for q, args in tasks]
        async with client.worker(
            concurrency=1, prefetch=0, queues=["high", "low"], queue_order=order
        ):
            for task_id in ids:
                await client.wait_for(task_id, timeout=60)
            await trio.sleep(5)
    return list(ORDER)


def tagged(queue: str, tag: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return queue, {"tag": tag, **extra}


async def test_round_robin_alternates_between_queues(autojump_clock: Any) -> None:
    """The default, round-robin, takes one claim from each queue in turn."""
    assert WorkerConfig().queue_order == "round-robin"
    ran = await run_order(
        "round-robin",
        [tagged("high", "h1"), tagged("high", "h2"), tagged("low", "l1"),
         tagged("low", "l2")],
    )  # fmt: skip
    assert ran == ["h1", "l1", "h2", "l2"]


async def test_priority_drains_earlier_queues_first(autojump_clock: Any) -> None:
    """Priority runs every high task before any low one, including a high task
    published while low ones wait."""
    ran = await run_order(
        "priority",
        [tagged("low", "l1"), tagged("high", "h1", then="h3"), tagged("low", "l2"),
         tagged("high", "h2")],
    )  # fmt: skip
    assert ran == ["h1", "h2", "h3", "l1", "l2"]


def test_queue_order_is_one_field_with_env_and_flag() -> None:
    """STEM_QUEUE_ORDER and --queue-order set the field; bad values are one-line
    errors (exit 2); `stem worker --help` documents the default."""
    assert WorkerConfig.from_env({"STEM_QUEUE_ORDER": "Priority"}).queue_order == (
        "priority"
    )
    with pytest.raises(stem.ConfigError, match="STEM_QUEUE_ORDER"):
        WorkerConfig.from_env({"STEM_QUEUE_ORDER": "random"})
    with pytest.raises(ValueError, match="queue_order"):
        WorkerConfig(queue_order="fifo")
    helped = run_stem("worker", "--help")
    assert "--queue-order round-robin|priority" in helped.stdout
    assert "[default: round-robin]" in helped.stdout
    bad = run_stem("worker", "--app", "tests.e2e_app:app", "--queue-order", "lifo",
                   "--url", "memory://")  # fmt: skip
    assert "--queue-order" in one_line_error(bad, 2)
