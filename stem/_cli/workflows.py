"""``stem wf start|ls|show|cancel|emit|send``: durable workflow runs."""

from __future__ import annotations

import json
from typing import Any

import click

from ..contracts import WORKFLOW_ACTIVE, WORKFLOW_FINAL, WorkflowRun, WorkflowStep
from ._common import (
    app_option,
    echo,
    echo_json,
    fail,
    get_app,
    iso,
    json_option,
    open_client,
    print_table,
    run,
    url_option,
)

_STATUSES = sorted(WORKFLOW_ACTIVE | WORKFLOW_FINAL)


def _json_arg(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None


def run_record(run_: WorkflowRun) -> dict[str, Any]:
    return {
        "run_id": run_.run_id,
        "workflow": run_.workflow,
        "version": run_.version,
        "status": run_.status,
        "current_step": run_.current_step,
        "params": run_.params,
        "result": run_.result,
        "error": run_.error.to_dict() if run_.error is not None else None,
        "parent_id": run_.parent_id,
        "cancel_requested": run_.cancel_requested,
        "created_at": iso(run_.created_at),
        "updated_at": iso(run_.updated_at),
        "due_at": iso(run_.due_at),
        "history": [step_record(s) for s in run_.history],
    }


def step_record(step: WorkflowStep) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "name": step.name,
        "status": step.status,
        "value": step.value,
        "error": step.error.to_dict() if step.error is not None else None,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "meta": dict(step.meta),
    }


@click.group("wf")
def wf() -> None:
    """Durable workflow runs: start, list, show, cancel, send events.

    \b
    Examples:
      stem wf start order.process --params '{"order": "A1"}' --app shop:app
      stem wf ls --status suspended
      stem wf show RUN_ID --json
      stem wf emit payment.received --payload '{"order": "A1"}'
    """


@wf.command("start")
@click.argument("name")
@click.option("--params", help="The run's params as JSON.")
@click.option("--run-id", help="Your own run id (a duplicate is refused).")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for the run to finish and print it.",
)
@app_option(required=True)
@url_option
@json_option
def start(
    name: str,
    params: str | None,
    run_id: str | None,
    wait_s: float | None,
    app_spec: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Start a run of workflow NAME (registered in --app); prints its id."""
    app = get_app(app_spec, required=True)
    value = _json_arg(params, "--params")

    async def go() -> dict[str, Any]:
        async with open_client(url, app) as client:
            started = await client.workflows.start(name, params=value, run_id=run_id)
            if wait_s is None:
                return {"run_id": started}
            return run_record(await client.workflows.wait(started, timeout=wait_s))

    record = run(go)
    if as_json:
        echo_json(record)
    elif "status" in record:
        echo(f"{record['run_id']} {record['status']}: {record['result']!r}")
    else:
        echo(record["run_id"])


@wf.command("ls")
@click.option("--workflow", help="Only runs of this workflow.")
@click.option(
    "--status", type=click.Choice(_STATUSES), help="Only runs in this status."
)
@click.option("--parent", "parent_id", help="Only child runs of this run.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@url_option
@json_option
def ls(
    workflow: str | None,
    status: str | None,
    parent_id: str | None,
    limit: int,
    offset: int,
    url: str,
    as_json: bool,
) -> None:
    """List workflow runs, oldest first."""

    async def go() -> list[WorkflowRun]:
        async with open_client(url) as client:
            runs: list[WorkflowRun] = await client.workflows.list(
                workflow=workflow,
                status=status,
                parent_id=parent_id,
                limit=limit,
                offset=offset,
            )
            return runs

    runs = run(go)
    if as_json:
        echo_json([run_record(r) for r in runs])
    elif runs:
        print_table(
            "Workflow runs",
            ["run id", "workflow", "version", "status", "step", "created", "updated"],
            [
                (
                    r.run_id,
                    r.workflow,
                    r.version,
                    r.status,
                    r.current_step,
                    iso(r.created_at),
                    iso(r.updated_at),
                )
                for r in runs
            ],
        )
    else:
        echo("No workflow runs.")


@wf.command("show")
@click.argument("run_id")
@url_option
@json_option
def show(run_id: str, url: str, as_json: bool) -> None:
    """Show one run: status, current step, result or error, and its history."""

    async def go() -> WorkflowRun | None:
        async with open_client(url) as client:
            found: WorkflowRun | None = await client.workflows.get(run_id)
            return found

    found = run(go)
    if found is None:
        fail(f"no workflow run with id {run_id!r}")
    record = run_record(found)
    if as_json:
        echo_json(record)
        return
    for key in ("run_id", "workflow", "version", "status", "current_step", "params"):
        echo(f"{key}: {record[key]}")
    if found.status == "completed":
        echo(f"result: {json.dumps(found.result)}")
    if found.error is not None:
        echo(f"error: {found.error.type}: {found.error.message}")
    print_table(
        "History",
        ["#", "kind", "name", "status", "value / error"],
        [
            (
                s.index,
                s.kind,
                s.name,
                s.status,
                f"{s.error.type}: {s.error.message}"
                if s.error is not None
                else json.dumps(s.value),
            )
            for s in found.history
        ],
    )


@wf.command("cancel")
@click.argument("run_id")
@url_option
def cancel(run_id: str, url: str) -> None:
    """Cancel a run (its running activity is revoked, its children cancelled)."""

    async def go() -> bool:
        async with open_client(url) as client:
            ok: bool = await client.workflows.cancel(run_id)
            return ok

    if not run(go):
        fail(f"no active workflow run with id {run_id!r}")
    echo(f"cancel requested for {run_id}")


@wf.command("emit")
@click.argument("topic")
@click.option("--payload", help="The event payload as JSON (default null).")
@url_option
@json_option
def emit(topic: str, payload: str | None, url: str, as_json: bool) -> None:
    """Deliver an event on TOPIC to every run waiting for it now."""
    value = _json_arg(payload, "--payload")

    async def go() -> list[str]:
        async with open_client(url) as client:
            ids: list[str] = await client.workflows.emit(topic, value)
            return ids

    ids = run(go)
    if as_json:
        echo_json({"topic": topic, "delivered_to": ids})
    else:
        echo(f"delivered to {len(ids)} run(s)")
        for run_id in ids:
            echo(f"  {run_id}")


@wf.command("send")
@click.argument("run_id")
@click.argument("topic")
@click.option("--payload", help="The event payload as JSON (default null).")
@url_option
def send(run_id: str, topic: str, payload: str | None, url: str) -> None:
    """Send an event on TOPIC to one run (kept until it waits for TOPIC)."""
    value = _json_arg(payload, "--payload")

    async def go() -> None:
        async with open_client(url) as client:
            await client.workflows.send(run_id, topic, value)

    run(go)
    echo(f"sent {topic} to {run_id}")
