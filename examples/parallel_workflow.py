"""Parallel steps in a durable workflow: ``wf.gather``.

A shipment asks three carriers for a quote at once (three activities running
concurrently on the workers), books the cheapest, and packs its two parcels
as two child workflows running side by side. Run in memory under Trio's
MockClock, so the carriers' seconds pass instantly; swap ``Client.in_memory``
for ``Client.from_url("sqlite:///ship.db", ...)`` and a crash in the middle of
a gather resumes without asking again the carriers that already answered.
"""

from typing import Any

import trio
import trio.testing

import stem
from stem import WorkflowContext

PRICES = {"ups": 31.0, "dhl": 27.5, "fedex": 29.0}
LATENCY = {"ups": 4.0, "dhl": 9.0, "fedex": 6.0}


@stem.task("carrier.quote")
async def quote(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    await trio.sleep(LATENCY[args["carrier"]])  # a slow partner API
    return {"carrier": args["carrier"], "price": PRICES[args["carrier"]]}


@stem.task("carrier.book")
async def book(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"{args['carrier']}-{args['order']}"


async def pack(wf: WorkflowContext) -> str:
    """A child workflow: one parcel takes a while to pack."""
    await wf.sleep(wf.params["minutes"] * 60)
    return f"parcel {wf.params['parcel']} packed"


async def ship(wf: WorkflowContext) -> dict[str, Any]:
    order = wf.params["order"]
    quotes = await wf.gather(
        *(wf.activity("carrier.quote", args={"carrier": c}) for c in sorted(PRICES))
    )
    best = min(quotes, key=lambda q: q["price"])
    label = await wf.activity(
        "carrier.book", args={"carrier": best["carrier"], "order": order}
    )
    parcels = await wf.gather(
        wf.child("shipment.pack", {"parcel": 1, "minutes": 20}),
        wf.child("shipment.pack", {"parcel": 2, "minutes": 30}),
    )
    return {"carrier": best["carrier"], "label": label, "parcels": parcels}


app = stem.App(
    tasks=[quote, book],
    workflows=[
        stem.WorkflowScript("shipment.ship", ship),
        stem.WorkflowScript("shipment.pack", pack),
    ],
)


async def main() -> None:
    async with stem.Client.in_memory(app=app) as client, client.worker():
        t0 = trio.current_time()
        run_id = await client.workflows.start("shipment.ship", params={"order": "A7"})
        run = await client.workflows.wait(run_id, timeout=3600)
        minutes = (trio.current_time() - t0) / 60
        print("status:", run.status)
        print("booked:", run.result["label"], "| parcels:", run.result["parcels"])
        print(f"took {minutes:.1f} minutes (the quotes and parcels ran side by side)")
        for step in run.history:
            print(f"  {step.index} {step.kind:8} {step.name:15} {step.status}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
