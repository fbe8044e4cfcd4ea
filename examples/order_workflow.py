"""A durable workflow: the seed's order.process (validate, charge, sleep 24
hours durably, wait for the warehouse, ship), run in memory under Trio's
MockClock so the day passes in milliseconds.

Swap ``Client.in_memory`` for ``Client.from_url("sqlite:///shop.db", ...)``
and the run survives any process dying at any point."""

from typing import Any

import trio
import trio.testing

import stem
from stem import WorkflowContext


@stem.task("order.charge", max_retries=3)
async def charge(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"order": args["order"], "charged": args["amount"]}


@stem.task("order.ship")
async def ship(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"shipped {args['order']} from {args['dock']}"


def validate(order: str) -> str:
    if not order.isalnum():
        raise ValueError(f"bad order id {order!r}")
    return order


async def process(wf: WorkflowContext) -> dict[str, Any]:
    order = await wf.step("validate", lambda: validate(wf.params["order"]))
    receipt = await wf.activity("order.charge", args={"order": order, "amount": 30})
    await wf.sleep(24 * 3600)  # durable: no worker or process is held
    dock = await wf.wait_for_event(f"warehouse.ready:{order}", timeout=3600)
    tracking = await wf.activity("order.ship", args={"order": order, "dock": dock})
    return {"receipt": receipt, "tracking": tracking, "done_at": wf.now()}


app = stem.App(
    tasks=[charge, ship],
    workflows=[stem.WorkflowScript("order.process", process, version=1)],
)


async def main() -> None:
    async with stem.Client.in_memory(app=app) as client, client.worker():
        run_id = await client.workflows.start("order.process", params={"order": "A1"})
        # The warehouse answers before the run waits: send() keeps it for the run.
        await client.workflows.send(run_id, "warehouse.ready:A1", "dock 7")
        run = await client.workflows.wait(run_id, timeout=2 * 24 * 3600)
        print("status:", run.status)
        print("result:", run.result["tracking"])
        for step in run.history:
            print(f"  {step.index} {step.kind:8} {step.name:22} {step.status}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
