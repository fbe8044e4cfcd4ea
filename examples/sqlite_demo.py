"""Stem on SQLite: tasks with retries and a delay, a worker, progress, results.

Run it:  python examples/sqlite_demo.py   (Ctrl-C any time, then run it again:
the tasks still queued in ``stem-demo.db`` are picked up where they stopped).
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

import stem

DB = Path("stem-demo.db")
BATCH = DB.with_suffix(".batch.json")  # the ids of the current demo batch
console = Console()


@stem.task("demo.thumbnail", max_retries=2)
async def thumbnail(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    """Pretend to render a thumbnail (takes a moment)."""
    await trio.sleep(random.uniform(0.2, 0.6))
    return {"image": args["image"], "size": [128, 128]}


@stem.task(
    "demo.flaky_upload",
    max_retries=3,
    retry_policy=stem.RetryPolicy(base=0.5, cap=2.0),
)
async def flaky_upload(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    """Fails on its first attempt, then succeeds: shows retries with backoff."""
    await trio.sleep(0.1)
    if ctx.attempt == 1:
        raise ConnectionError(f"upload of {args['image']} timed out (attempt 1)")
    return f"uploaded {args['image']} on attempt {ctx.attempt}"


@stem.task("demo.reminder")
async def reminder(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    """Enqueued with a countdown: runs a few seconds later."""
    return f"reminder for {args['user']} sent"


app = stem.App([thumbnail, flaky_upload, reminder])


async def enqueue_batch(client: stem.Client) -> list[str]:
    ids = []
    for n in range(1, 13):
        ids.append(
            await client.enqueue("demo.thumbnail", args={"image": f"cat-{n}.jpg"})
        )
    for n in range(1, 4):
        ids.append(
            await client.enqueue("demo.flaky_upload", args={"image": f"dog-{n}.jpg"})
        )
    ids.append(await client.enqueue("demo.reminder", args={"user": "ada"}, countdown=3))
    BATCH.write_text(json.dumps(ids))
    return ids


async def main() -> None:
    url = f"sqlite:///{DB}"
    interrupted = trio.Event()
    async with stem.Client.from_url(url, app=app) as client:
        ids: list[str] = json.loads(BATCH.read_text()) if BATCH.exists() else []
        states = [await client.get(i) for i in ids]
        if ids and not all(s is not None and s.is_terminal for s in states):
            left = sum(1 for s in states if s is None or not s.is_terminal)
            console.print(f"[bold]Resuming[/]: {left} of {len(ids)} tasks still to do.")
        else:
            ids = await enqueue_batch(client)
            console.print(
                f"[bold]Enqueued[/] {len(ids)} tasks into {DB} (Ctrl-C to stop)."
            )
        async with client.worker(concurrency=4, grace_period=5):
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
            ) as progress:
                bar = progress.add_task("running", total=len(ids))
                with trio.open_signal_receiver(
                    signal.SIGINT, signal.SIGTERM
                ) as signals:
                    async with trio.open_nursery() as nursery:

                        async def stop_on_signal() -> None:
                            async for _ in signals:
                                interrupted.set()
                                nursery.cancel_scope.cancel()

                        async def watch_all() -> None:
                            async with trio.open_nursery() as watchers:
                                for task_id in ids:
                                    watchers.start_soon(watch, task_id)
                            nursery.cancel_scope.cancel()

                        async def watch(task_id: str) -> None:
                            await client.wait_for(task_id, timeout=120)
                            progress.advance(bar)

                        nursery.start_soon(stop_on_signal)
                        nursery.start_soon(watch_all)
        if interrupted.is_set():
            console.print(
                "Interrupted: the worker handed unfinished tasks back; they stay "
                f"queued in {DB}. Run the demo again to resume."
            )
            return
        table = Table("task", "state", "attempts", "result")
        for task_id in ids:
            result = await client.get(task_id)
            assert result is not None
            shown = (
                result.value if result.ok else (result.error and result.error.message)
            )
            table.add_row(
                result.name, result.state.value, str(result.attempt), str(shown)
            )
        console.print(table)
    BATCH.unlink(missing_ok=True)
    print("Demo finished: every task ran; run it again for a new batch.")


if __name__ == "__main__":
    trio.run(main)
