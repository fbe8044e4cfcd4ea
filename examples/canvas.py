"""Canvas example: resize -> upload -> notify as a chain, a group of resizes,
and a chord of fetches with an aggregate callback.

Run: python examples/canvas.py   (in-memory backend; swap the URL for sqlite:///...)
"""

from __future__ import annotations

from typing import Any

import trio

import stem


@stem.task("image.resize")
async def resize(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"{args['path']}@{args.get('width', 800)}w"


@stem.task("image.upload")
async def upload(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"https://cdn.example/{ctx.previous_result}"  # the resized file


@stem.task("user.notify")
async def notify(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    return f"told {args['user']} about {ctx.previous_result}"


@stem.task("feed.fetch")
async def fetch(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return len(args["url"])  # pretend: number of new items


@stem.task("feed.aggregate")
async def aggregate(ctx: stem.TaskContext, args: dict[str, Any]) -> dict[str, int]:
    counts: list[int] = ctx.previous_result  # member results, member order
    return {"feeds": len(counts), "items": sum(counts)}


async def main() -> None:
    sig = stem.signature
    tasks = [resize, upload, notify, fetch, aggregate]
    async with stem.Client.in_memory(tasks=tasks) as client, client.worker():
        chain = await client.canvas.chain(
            [
                sig("image.resize", {"path": "cat.png"}),
                sig("image.upload", max_retries=3),
                sig("user.notify", {"user": "ada"}),
            ]
        )
        print("chain:", await chain.get(timeout=10))

        group = await client.canvas.group(
            [sig("image.resize", {"path": "cat.png", "width": w}) for w in (320, 640)]
        )
        print("group:", await group.get(timeout=10))

        chord = await client.canvas.chord(
            [sig("feed.fetch", {"url": u}) for u in ("a.example", "bb.example")],
            callback=sig("feed.aggregate"),
        )
        print("chord:", await chord.get(timeout=10))

        # Nested: resize, then upload two sizes in parallel, then notify.
        nested = await client.canvas.chain(
            [
                sig("image.resize", {"path": "dog.png"}),
                stem.group([sig("image.upload"), sig("image.upload")]),
                sig("user.notify", {"user": "bob"}),
            ]
        )
        print("nested:", await nested.get(timeout=10))
        print("links:", [r.state.value for r in await nested.results() if r])


if __name__ == "__main__":
    trio.run(main)
