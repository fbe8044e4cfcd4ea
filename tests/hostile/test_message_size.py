"""``max_message_bytes``: too large a message is refused at enqueue before
anything is written, and dead-lettered by a worker when it arrives anyway."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem._codec import DEFAULT_MAX_MESSAGE_BYTES


@stem.task("t")
async def t(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return len(args.get("data", ""))


async def test_fifty_megabytes_of_args_are_refused_at_enqueue() -> None:
    """50 MB of arguments raise EncodeError naming max_message_bytes, and
    nothing is queued or recorded."""
    async with stem.Client.in_memory(tasks=[t]) as client:
        with pytest.raises(stem.EncodeError, match="max_message_bytes"):
            await client.enqueue("t", {"data": "x" * (50 * 2**20)}, task_id="big")
        stats = await client.queue_stats()
        assert (stats.pending, stats.delayed) == (0, 0)
        assert await client.get("big") is None
    assert DEFAULT_MAX_MESSAGE_BYTES == 8 * 2**20


async def test_the_limit_counts_utf8_bytes_and_meta() -> None:
    """Multi-byte characters count as their UTF-8 bytes, and a message just
    under the limit is accepted."""
    async with stem.Client.in_memory(tasks=[t], max_message_bytes=10_000) as client:
        await client.enqueue("t", {"data": "x" * 9_000})
        with pytest.raises(stem.EncodeError):
            await client.enqueue("t", {"data": "é" * 4_950})  # 9,900 bytes + ~230
        with pytest.raises(stem.EncodeError):
            await client.enqueue("t", {"data": "€" * 3_400})


async def test_no_limit_when_none() -> None:
    """max_message_bytes=None enqueues any size."""
    async with stem.Client.in_memory(tasks=[t], max_message_bytes=None) as client:
        await client.enqueue("t", {"data": "x" * (9 * 2**20)})


def test_the_limit_must_be_positive() -> None:
    """A limit that is not a positive int is refused when the client is made."""
    for bad in (0, -1, 1.5, True, "8MB"):
        with pytest.raises(ValueError, match="max_message_bytes"):
            stem.Client("memory://", max_message_bytes=bad)  # type: ignore[arg-type]


async def test_a_worker_with_a_lower_limit_dead_letters_larger_messages() -> None:
    """A message under the client's limit but over its worker's is
    dead-lettered as message-too-large (first bytes kept); smaller ones run."""
    async with stem.Client.from_url("sqlite:///:memory:", tasks=[t]) as client:
        small = await client.enqueue("t", {"data": "x" * 10})
        big = await client.enqueue("t", {"data": "x" * 50_000})
        async with client.worker(max_message_bytes=20_000, claim_wait=0.1):
            assert (await client.wait_for(small, timeout=10)).value == 10
            with trio.fail_after(30):
                while await client.dead_letters("default").count() < 1:
                    await trio.sleep(0.1)
        [entry] = await client.dead_letters("default").list()
        result = await client.get(big)
    assert entry.task_id == big
    assert entry.reason == "message-too-large"
    assert entry.envelope is None
    assert entry.raw is not None
    assert entry.raw.startswith(b"{")
    assert len(entry.raw) <= 64 * 1024
    assert result is not None
    assert result.state is stem.TaskState.FAILED


def test_the_worker_limit_is_one_option_everywhere() -> None:
    """WorkerConfig declares max_message_bytes with its variable and flag."""
    from stem._workerconfig import option_specs

    spec = option_specs()["max_message_bytes"]
    assert spec.env == "STEM_MAX_MESSAGE_BYTES"
    assert "--max-message-bytes" in spec.flags
    config = stem.WorkerConfig.from_env({"STEM_MAX_MESSAGE_BYTES": "1024"})
    assert config.max_message_bytes == 1024
