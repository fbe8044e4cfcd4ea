"""A small app for the CLI tests: ``--app tests.cli_app:app``."""

from __future__ import annotations

from typing import Any

import stem


@stem.task("cli.add")
async def add(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return int(args["a"]) + int(args["b"])


@stem.task("cli.boom", max_retries=0)
async def boom(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
    raise RuntimeError(f"boom {args.get('n', 0)}")


class MailTask(stem.TaskHandler[str]):
    name = "cli.mail"
    options = stem.TaskOptions(
        queue="mail", max_retries=3, rate_limit="10/s", hard_time_limit=5.0
    )

    async def __call__(self, ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        return f"sent to {args['to']}"


app = stem.App([add, boom, MailTask()])

not_an_app = 42
