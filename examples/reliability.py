"""Reliability options in one run: a rate limit, a unique task, a retry, a
revocation, a dead letter replayed, and remote control of two workers.

Run: python examples/reliability.py   (memory backend, about 3 s)
"""

from __future__ import annotations

from typing import Any

import trio

import stem


@stem.task(
    "mail.send", rate_limit="5/s", rate_limit_key="tenant", rate_limit_scope="global"
)
async def send(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"sent {args['n']} for {ctx.headers['tenant']}"


@stem.task("invoice.render", unique=True)
async def render(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"invoice {args['invoice']}"


@stem.task(
    "flaky",
    max_retries=2,
    retry_policy=stem.RetryPolicy(base=0.1, jitter=False),
    visibility_timeout=10,
)
async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    if ctx.attempt < 2:
        raise ConnectionError("upstream hiccup")
    return ctx.attempt


@stem.task("broken")
async def broken(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    raise ValueError("bad data")


async def main() -> None:
    tasks = [send, render, flaky, broken]
    async with (
        stem.Client.in_memory(tasks=tasks) as client,
        client.worker(worker_id="w1"),
        client.worker(worker_id="w2"),
    ):
        # Global rate limit: 10 mails of one tenant take about 1.8 s at 5/s
        # however many workers share them.
        t0 = trio.current_time()
        ids = [
            await client.enqueue("mail.send", {"n": n}, headers={"tenant": "acme"})
            for n in range(10)
        ]
        for task_id in ids:
            await client.wait_for(task_id, timeout=30)
        print(f"10 rate-limited mails took {trio.current_time() - t0:.1f} s")

        # Unique: the same invoice enqueued twice is one task.
        a = await client.enqueue("invoice.render", {"invoice": 42}, countdown=1)
        b = await client.enqueue("invoice.render", {"invoice": 42}, countdown=1)
        print("duplicate enqueue returned the same id:", a == b)

        # Retry: fails once, succeeds on attempt 2, leaves no dead letter.
        result = await client.wait_for(await client.enqueue("flaky"), timeout=30)
        print("flaky:", result.state, "on attempt", result.value)

        # Revocation: a delayed task revoked before it is due never runs.
        later = await client.enqueue("mail.send", {"n": 99}, countdown=60)
        await client.revoke(later)
        print("revoked:", (await client.get(later)).state)  # type: ignore[union-attr]

        # Dead letter, then replay.
        dead = await client.wait_for(await client.enqueue("broken"), timeout=30)
        await client.flush()
        entries = await client.dead_letters().list()
        print("dead letter:", dead.state, entries[0].reason)

        # Remote control: every live worker answers.
        replies = await client.control.ping()
        print("ping answered by", [r.worker_id for r in replies])
        await client.control.pause("default")
        stats = await client.control.stats()
        print("paused:", {r.worker_id: r.data["paused"] for r in stats})
        await client.control.resume("default")


if __name__ == "__main__":
    trio.run(main)
