"""Signed remote control: requests and replies carry signatures; unsigned,
tampered, stale and replayed requests are ignored and logged; every command
a worker obeys is logged with its origin and key. The common case runs on
every backend (throwaway Redis and PostgreSQL servers, skipped with the
reason outside CI); the details run on memory."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import stem
from stem._clock import now

KEY = stem.SigningKey.hmac("ctl-1", b"control secret of thirty-two b.")
STRICT = stem.Signing(keys=[KEY], require_signed=True)
BACKENDS = [
    "memory_backend_factory",
    "sqlite_backend_factory",
    "redis_backend_factory",
    "postgres_backend_factory",
]


@stem.task("ctl.sleep")
async def sleeper(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
    await trio.sleep(args.get("s", 3600))
    return "woke"


def app(signing: stem.Signing | None) -> stem.App:
    return stem.App(tasks=[sleeper], signing=signing)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "stem.control" and r.levelno == level
    ]


async def _until_logged(
    caplog: pytest.LogCaptureFixture, text: str, level: int = logging.WARNING
) -> None:
    while not any(text in m for m in messages(caplog, level)):
        await trio.sleep(0.02)


@pytest.mark.parametrize("factory_name", BACKENDS)
async def test_a_forged_shutdown_is_ignored_and_a_signed_pause_obeyed(
    request: pytest.FixtureRequest,
    factory_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unsigned shutdown broadcast straight on the backend is ignored with
    a warning and the worker keeps answering; a signed pause is obeyed,
    answered with a signed reply, and logged with its origin and key."""
    caplog.set_level(logging.INFO, logger="stem.control")
    factory = request.getfixturevalue(factory_name)
    async with factory() as backend:
        async with (
            stem.Client(backend=backend, app=app(STRICT)) as client,
            client.worker(
                worker_id="w1", claim_wait=0.2, queues=["default", "mail"]
            ) as worker,
        ):
            with trio.fail_after(30):
                await backend.broker.broadcast(
                    {
                        "kind": "stem.control",
                        "request_id": "forged-1",
                        "command": "shutdown",
                        "args": {"mode": "hard"},
                        "destination": None,
                    }
                )
                await _until_logged(caplog, "forged-1")
                replies = await client.control.pause("mail", timeout=10)
                assert [(r.worker_id, r.ok) for r in replies] == [("w1", True)]
                assert worker.worker_statistics().paused == ("mail",)
    [warning] = [m for m in messages(caplog, logging.WARNING) if "forged-1" in m]
    assert "'shutdown'" in warning and "the request is not signed" in warning
    [obeyed] = messages(caplog, logging.INFO)
    assert obeyed.startswith("obeying control command 'pause' (request ")
    assert "signed by key 'ctl-1'" in obeyed
    assert " pid " in obeyed  # the sender's host and pid


async def test_tampered_stale_and_replayed_requests_are_ignored(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed request whose command was changed, one issued longer ago
    than max_age, and a second copy of one already obeyed are ignored."""
    caplog.set_level(logging.INFO, logger="stem.control")
    async with (
        stem.Client.in_memory(app=app(STRICT)) as client,
        client.worker(worker_id="w1", queues=["default", "a", "b"]) as worker,
    ):
        broker = client.backend.broker
        tampered = {**client.control.request("ping"), "command": "shutdown"}
        stale = STRICT.sign_control(
            {
                **client.control.request("pause", {"queue": "a"}),
                "issued_at": now() - 301,
            }
        )
        pause = client.control.request("pause", {"queue": "b"})
        for body in (tampered, stale, pause):
            await broker.broadcast(body)
        await _until_logged(caplog, stale["request_id"])
        await _until_logged(caplog, pause["request_id"], logging.INFO)
        assert worker.worker_statistics().paused == ("b",)
        assert worker.resume("b")
        await broker.broadcast(pause)  # the same signed request again
        await _until_logged(caplog, "already obeyed")
        assert worker.worker_statistics().paused == ()
        assert [r.ok for r in await client.control.ping()] == [True]
    warnings = messages(caplog, logging.WARNING)
    assert any("does not match" in m and tampered["request_id"] in m for m in warnings)
    assert any("outside the 300 s" in m for m in warnings)
    assert any("a replay of a request already obeyed" in m for m in warnings)
    assert len(messages(caplog, logging.INFO)) == 2  # the pause and the ping


async def test_clients_ignore_unsigned_replies_and_revoke_is_signed(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client requiring signatures ignores the unsigned replies of a
    worker that does not sign; a signed client's revoke(terminate=True)
    reaches a worker that requires signatures and stops the task."""
    caplog.set_level(logging.INFO, logger="stem.control")
    lenient_worker = stem.App(tasks=[sleeper])
    async with stem.Client.in_memory(app=lenient_worker) as plain:
        backend = plain.backend
        async with (
            plain.worker(worker_id="plain"),
            stem.Client(backend=backend, app=app(STRICT)) as strict,
        ):
            assert await strict.control.ping(timeout=2) == []
            assert [r.worker_id for r in await plain.control.ping()] == ["plain"]
    assert any(
        "claiming to be from worker 'plain'" in m
        for m in messages(caplog, logging.WARNING)
    )
    async with (
        stem.Client.in_memory(app=app(STRICT)) as client,
        client.worker(worker_id="w1"),
    ):
        task_id = await client.enqueue("ctl.sleep")
        while (await client.get(task_id)).state != stem.TaskState.RUNNING:  # type: ignore[union-attr]
            await trio.sleep(0.1)
        await client.revoke(task_id, terminate=True)
        result = await client.wait_for(task_id, timeout=60)
    assert result.state == stem.TaskState.REVOKED
    assert any("'revoke'" in m for m in messages(caplog, logging.INFO))
