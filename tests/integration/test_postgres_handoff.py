"""On Postgres the insert of a new message hands it to an idle waiting claim
(``_schema.HAND_OFF``, issue 19): the row is inserted already leased to
that consumer and NOTIFYed to its own channel, so the worker needs no claim
after the wake. What must hold: a handed row is leased as a claimed one is
(renewed, acked, taken over when its holder dies), a registration whose
listener is gone or that has lapsed is never handed anything, a body too
big for a NOTIFY goes the usual way, a cancelled claim stops its handoffs,
and a payload that does not parse loses nothing."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import pytest
import trio
import trio_asyncio

import stem
from stem._envelope import Envelope
from stem.adapters.postgres import open_backend
from stem.adapters.postgres._broker import (
    PostgresBroker,
    _hand_channel,
    _handed_delivery,
)
from stem.contracts import Delivery, Revocation

pytestmark = pytest.mark.postgres


async def _sql(url: str, sql: str, *args: object) -> list[Any]:
    import asyncpg

    dsn = url.split("?", 1)[0]

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    if trio_asyncio.current_loop.get() is not None:
        return await trio_asyncio.aio_as_trio(run)()
    async with trio_asyncio.open_loop():
        return await trio_asyncio.aio_as_trio(run)()


def _schema(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


async def _registered(url: str) -> dict[str, int]:
    rows = await _sql(url, f'SELECT consumer, capacity FROM "{_schema(url)}".idle')
    return {row[0]: row[1] for row in rows}


async def _wait_registered(url: str, consumer: str) -> None:
    with trio.fail_after(10):
        while consumer not in await _registered(url):
            await trio.sleep(0.01)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    received = PostgresBroker._received

    def spy(self: PostgresBroker, consumer: str, payload: str) -> None:
        seen.append(consumer)
        received(self, consumer, payload)

    monkeypatch.setattr(PostgresBroker, "_received", spy)
    return seen


async def _claim_into(
    backend: Any, got: list[Delivery], consumer: str, **kw: Any
) -> None:
    kw.setdefault("limit", 5)
    kw.setdefault("lease", 30)
    got.extend(await backend.broker.claim(["q"], consumer=consumer, wait=10, **kw))


async def test_an_idle_claim_is_handed_a_publish_from_another_backend(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy(monkeypatch)
    async with (
        open_backend(postgres_url) as worker,
        open_backend(postgres_url) as producer,
    ):
        got: list[Delivery] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, worker, got, "w1")
            await _wait_registered(postgres_url, "w1")
            await producer.broker.publish([Envelope(id="a", name="t", queue="q")])
        assert seen == ["w1"]
        (delivery,) = got
        assert delivery.task_id == "a" and delivery.delivery_count == 1
        assert delivery.revocation_checked and delivery.revocation is None
        assert delivery.lease_until > stem.now() + 20
        assert await _registered(postgres_url) == {"w1": 4}
        stats = await producer.broker.stats("q")
        assert (stats.pending, stats.in_flight) == (0, 1)
        assert await worker.broker.extend([delivery], 60) == [True]
        await worker.broker.ack([delivery])
        stats = await producer.broker.stats("q")
        assert (stats.pending, stats.in_flight) == (0, 0)


async def test_a_handed_message_carries_its_revocation(postgres_url: str) -> None:
    async with open_backend(postgres_url) as backend:
        await backend.revocations.revoke(Revocation(task_id="r", reason="stop"))
        got: list[Delivery] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, backend, got, "w")
            await _wait_registered(postgres_url, "w")
            await backend.broker.publish([Envelope(id="r", name="t", queue="q")])
        (delivery,) = got
        assert delivery.revocation_checked
        assert delivery.revocation is not None
        assert delivery.revocation.reason == "stop"


async def test_a_worker_runs_tasks_handed_by_client_enqueues(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: an idle worker gets ``client.enqueue``'s messages (the
    create-and-publish statement) by handoff, and runs each once."""
    seen = _spy(monkeypatch)
    ran: list[str] = []

    @stem.task("t")
    async def t(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ran.append(ctx.task_id)

    async with stem.Client.from_url(postgres_url, tasks=[t]) as client:
        async with client.worker(concurrency=2, queues=["q"]):
            ids = []
            for _ in range(5):
                await trio.sleep(0.2)  # the worker is idle again
                ids.append(await client.enqueue("t", queue="q"))
            with trio.fail_after(20):
                for task_id in ids:
                    done = await client.wait_for(task_id, timeout=20)
                    assert done.state is stem.TaskState.SUCCEEDED
    assert sorted(ran) == sorted(ids)
    assert seen, "no enqueue was handed to the idle worker"


async def test_a_cancelled_claim_drops_its_registration(postgres_url: str) -> None:
    async with open_backend(postgres_url) as backend:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def claim() -> None:
                with scope:
                    await backend.broker.claim(
                        ["q"], limit=5, lease=30, consumer="w", wait=10
                    )

            nursery.start_soon(claim)
            await _wait_registered(postgres_url, "w")
            scope.cancel()
        assert await _registered(postgres_url) == {}
        await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        got = await backend.broker.claim(["q"], limit=5, lease=30, consumer="x")
        assert [d.task_id for d in got] == ["m"]


@pytest.mark.parametrize("case", ["listener gone", "lapsed", "no capacity"])
async def test_a_registration_that_cannot_be_served_gets_nothing(
    postgres_url: str, case: str
) -> None:
    """The insert leases nothing to it: the message stays ready."""
    async with open_backend(postgres_url) as backend:
        pid = backend.hub.pid
        upto = stem.now() + 60
        capacity = 5
        if case == "listener gone":
            pid = 2_000_000_000  # no backend has this pid
        elif case == "lapsed":
            upto = stem.now() - 1
        else:
            capacity = 0
        await _sql(
            postgres_url,
            f'INSERT INTO "{_schema(postgres_url)}".idle VALUES '
            "('q', 'ghost', $1, 30, $2, 'stem_hand_ghost', $3)",
            capacity,
            upto,
            pid,
        )
        await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        stats = await backend.broker.stats("q")
        assert (stats.pending, stats.in_flight) == (1, 0)


async def test_a_body_too_big_for_a_notify_goes_the_usual_way(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy(monkeypatch)
    async with open_backend(postgres_url) as backend:
        got: list[Delivery] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, backend, got, "w")
            await _wait_registered(postgres_url, "w")
            big = Envelope(id="big", name="t", queue="q", args={"x": "y" * 9000})
            await backend.broker.publish([big])
        assert [d.task_id for d in got] == ["big"]
        assert seen == []  # woken, then claimed


async def test_handoff_off_registers_nothing(postgres_url: str) -> None:
    async with open_backend(postgres_url, handoff=False) as backend:
        got: list[Delivery] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_claim_into, backend, got, "w")
            await trio.sleep(0.3)
            assert await _registered(postgres_url) == {}
            await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        assert [d.task_id for d in got] == ["m"]


async def test_a_schema_before_the_handoff_turns_it_off(postgres_url: str) -> None:
    """With ``auto_migrate=false`` on a schema migrated before the handoff
    existed, the backend runs without it (no missing function)."""
    async with open_backend(postgres_url):
        pass
    schema = f'"{_schema(postgres_url)}"'
    for statement in (
        f"DROP FUNCTION {schema}.hand_off",
        f"DROP TABLE {schema}.idle",
        f"DELETE FROM {schema}.migrations WHERE version = 8",
    ):
        await _sql(postgres_url, statement)
    async with open_backend(postgres_url, auto_migrate=False) as backend:
        assert backend.broker.config.handoff is False
        await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        got = await backend.broker.claim(["q"], limit=5, lease=30, consumer="c")
        assert [d.task_id for d in got] == ["m"]


async def test_a_payload_that_does_not_parse_loses_nothing(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_backend(postgres_url) as backend:
        got: list[Delivery] = []
        channel = _hand_channel(_schema(postgres_url), "w")
        with caplog.at_level(logging.WARNING, logger="stem.postgres"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_claim_into, backend, got, "w")
                await _wait_registered(postgres_url, "w")
                await _sql(postgres_url, "SELECT pg_notify($1, 'garbage')", channel)
                await trio.sleep(0.2)
                assert got == []
                await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        assert [d.task_id for d in got] == ["m"]
        assert "handoff that does not parse" in caplog.text


async def test_a_handed_message_whose_holder_is_gone_comes_back(
    postgres_url: str,
) -> None:
    async with open_backend(postgres_url) as backend:
        got: list[Delivery] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(_claim_into, backend, got, "dies", lease=0.3)
            )
            await _wait_registered(postgres_url, "dies")
            await backend.broker.publish([Envelope(id="m", name="t", queue="q")])
        assert [d.task_id for d in got] == ["m"]
        await trio.sleep(0.4)
        (again,) = await backend.broker.claim(["q"], limit=5, lease=30, consumer="h")
        assert again.task_id == "m" and again.delivery_count == 2
        await backend.broker.ack([got[0]])  # a stale receipt: ignored
        assert (await backend.broker.stats("q")).in_flight == 1
        await backend.broker.ack([again])
        assert (await backend.broker.stats("q")).in_flight == 0


_GOOD = {"q": "q", "i": 7, "t": "tok", "u": 5.0, "k": "a", "b": "", "v": None}


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "[]",
        json.dumps({**_GOOD, "i": "7"}),
        json.dumps({**_GOOD, "i": True}),
        json.dumps({**_GOOD, "u": "soon"}),
        json.dumps({**_GOOD, "q": None}),
        json.dumps({**_GOOD, "b": "!!not base64!!"}),
        json.dumps({**_GOOD, "v": [True, "r"]}),
        json.dumps({**_GOOD, "v": [True, 3, None, 1]}),
        json.dumps({k: v for k, v in _GOOD.items() if k != "t"}),
        '{"q": "q", "i": 7, "t": "t", "u": NaN, "k": "a", "b": "", "v": null}',
    ],
)
def test_handoff_payloads_are_decoded_totally(payload: str) -> None:
    with pytest.raises((TypeError, ValueError, KeyError)):
        _handed_delivery(payload)


def test_a_body_that_does_not_decode_is_handed_for_the_dead_letter_queue() -> None:
    delivery = _handed_delivery(json.dumps({**_GOOD, "b": "AGdhcmJhZ2U="}))
    assert delivery.envelope is None and delivery.decode_error
    assert delivery.receipt == "7:tok" and delivery.lease_until == 5.0


async def test_the_reaper_deletes_lapsed_registrations(postgres_url: str) -> None:
    """Workers that stopped leave registrations behind; the reaper deletes
    the lapsed ones and keeps a live one."""
    from stem.adapters.postgres._stores import reap

    async with open_backend(postgres_url) as backend:
        table = f'"{_schema(postgres_url)}".idle'
        for consumer, upto in (("gone", stem.now() - 1), ("live", stem.now() + 60)):
            await _sql(
                postgres_url,
                f"INSERT INTO {table} VALUES ('q', $1, 5, 30, $2, 'c', 1)",
                consumer,
                upto,
            )
        await reap(backend.config, backend.db)
        assert await _registered(postgres_url) == {"live": 5}
