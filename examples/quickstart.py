"""Stem's quick start: one task, one worker, one result (in memory)."""

import trio

import stem


class EmailTask(stem.TaskHandler[str]):
    name = "email.send"
    options = stem.TaskOptions(queue="mail", max_retries=5, rate_limit="100/m")

    async def __call__(self, ctx: stem.TaskContext, args: dict) -> str:
        return f"sent to {args['to']}"


async def main() -> None:
    async with stem.Client.in_memory(tasks=[EmailTask()]) as client:
        async with client.worker(concurrency=8, queues=["default", "mail"]):
            task_id = await client.enqueue(
                "email.send", args={"to": "hello@example.com"}
            )
            result = await client.wait_for(task_id, timeout=10)
            print("Result:", result.value)


if __name__ == "__main__":
    trio.run(main)
