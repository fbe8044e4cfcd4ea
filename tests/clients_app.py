"""The app the asyncio and blocking client tests (and the FastAPI and
Django examples' tests) run: ``STEM_APP=tests.clients_app:app``; and
:func:`worker_thread`, a worker of it in a Trio run of its own thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

import stem


@stem.task("clients.add")
async def add(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    ctx.progress(1, 1)
    return int(args["a"]) + int(args["b"])


@stem.task("clients.boom")
async def boom(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    raise RuntimeError("boom")


@stem.task("clients.sleep")
async def sleep(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    await trio.sleep(float(args["seconds"]))
    return "slept"


async def greet(wf: stem.WorkflowContext) -> str:
    total = await wf.activity("clients.add", args={"a": 1, "b": 2})
    name = await wf.wait_for_event("clients.name", timeout=60)
    return f"hello {name} {total}"


app = stem.App(
    [add, boom, sleep],
    workflows=[stem.WorkflowScript("clients.greet", greet)],
)


@contextmanager
def worker_thread(url: str, **options: Any) -> Iterator[None]:
    """A worker of ``app`` on ``url`` (a shared backend) for the block, in
    a Trio run of its own thread."""
    ready, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        async with stem.Client.from_url(url, app=app) as client:
            async with client.worker(claim_wait=0.05, **options):
                ready.set()
                await trio.to_thread.run_sync(done.wait, abandon_on_cancel=True)

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="test-worker", daemon=True)
    thread.start()
    ready.wait(30)
    if errors:
        raise errors[0]
    try:
        yield
    finally:
        done.set()
        thread.join(60)
        if errors:
            raise errors[0]
