"""Compensation in a durable workflow: ``wf.saga()``.

A trip books a car, a hotel and a flight. Each booking registers its undo
right after it succeeds; the flight is sold out, so the saga cancels the
hotel, then the car (newest first), each as a durable step, and the run
fails with the flight's error. Run in memory under Trio's MockClock; on
SQLite, Redis or Postgres a process killed in the middle of the compensation
resumes it without cancelling anything twice.
"""

from typing import Any

import trio
import trio.testing

import stem
from stem import WorkflowContext

SOLD_OUT = {"flight"}


@stem.task("trip.book")
async def book(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    if args["what"] in SOLD_OUT:
        raise RuntimeError(f"no {args['what']} left for {args['trip']}")
    print(f"  booked {args['what']}")
    return f"{args['what']}-{args['trip']}"


@stem.task("trip.cancel")
async def cancel(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    print(f"  cancelled {args['booking']}")


async def trip(wf: WorkflowContext) -> list[str]:
    bookings = []
    async with wf.saga() as saga:
        for what in ("car", "hotel", "flight"):
            booking = await wf.activity(
                "trip.book", args={"what": what, "trip": wf.params["trip"]}
            )
            saga.add(wf.activity("trip.cancel", args={"booking": booking}))
            bookings.append(booking)
    return bookings


app = stem.App(tasks=[book, cancel], workflows=[stem.WorkflowScript("trip", trip)])


async def main() -> None:
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("trip", params={"trip": "T9"})
        try:
            await client.workflows.wait(run_id, timeout=600)
        except stem.WorkflowFailed as exc:
            print("status: failed:", exc.error.message if exc.error else exc)
        run = await client.workflows.get(run_id)
        assert run is not None
        for step in run.history:
            print(f"  {step.index} {step.kind:8} {step.name:12} {step.status}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
