"""Scripted poison against a real ``stem worker`` process, per backend.

Each test writes its backend's poison straight into it (raw SQL, raw Redis
commands, NOTIFY, PUBLISH) between waves of good tasks, and checks that the
poison is dead-lettered with its reason (or runs once, or is dropped, as its
:class:`~tests.hostile._poison.Case` says), every good task succeeds exactly
once, and the process stays up and answers a ping. One worker process per
backend serves every case. The tally of each run is printed (``-s``).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

import stem
from stem.adapters.redis._conn import Keys
from tests.hostile._poison import (
    Case,
    envelope,
    queue_poison,
    run_against_worker,
    text,
)

pytestmark = pytest.mark.slow


# -- SQLite ---------------------------------------------------------------


def _sqlite_exec(path: Path, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            conn.executemany(sql, rows)
    finally:
        conn.close()


_SQLITE_INSERT = (
    "INSERT INTO messages (queue, task_id, priority, visible_at, body, "
    "delivery_count) VALUES ('default', ?, 0, 0, ?, ?)"
)


async def test_sqlite_worker_survives_poison(tmp_path: Path) -> None:
    """Poison rows in SQLite (bodies that are not envelopes, a body stored as
    REAL or INTEGER, odd column types) are dead-lettered with their reason,
    malformed broadcasts rows are dropped, and every good task around them
    succeeds exactly once in a worker that stays up."""
    db = tmp_path / "stem.db"
    url = f"sqlite:///{db}?poll_interval=0.02"

    async def inject(client: stem.Client) -> list[Case]:
        cases = queue_poison()
        rows: list[tuple[Any, ...]] = [(c.task_id, c.body, 0) for c in cases]
        cases += [
            Case("body stored as REAL", "dead", "decode-error", "p-real", b"3.25"),
            Case("body stored as INTEGER", "dead", "decode-error", "p-integer", b"42"),
            Case("task id column an INTEGER", "runs", task_id="p-tid"),
            Case("delivery_count a TEXT", "runs", task_id="p-count"),
        ]
        rows += [
            ("p-real", 3.25, 0),
            ("p-integer", 42, 0),
            (7, text(envelope("p-tid")).decode(), 0),
            ("p-count", text(envelope("p-count")).decode(), "lots"),
        ]
        await trio.to_thread.run_sync(_sqlite_exec, db, _SQLITE_INSERT, rows)
        return cases

    async def broadcast_raw(client: stem.Client, body: bytes) -> None:
        sql = "INSERT INTO broadcasts (created_at, body) VALUES (?, ?)"
        value: Any = body.decode() if body.isascii() else body
        await trio.to_thread.run_sync(_sqlite_exec, db, sql, [(time.time(), value)])

    async def odd_broadcasts(client: stem.Client) -> int:
        sql = "INSERT INTO broadcasts (created_at, body) VALUES (?, ?)"
        rows = [(time.time(), 1.5), (time.time(), b"\xff\xfe")]
        await trio.to_thread.run_sync(_sqlite_exec, db, sql, rows)
        return len(rows)

    tally = await run_against_worker(
        "sqlite",
        url,
        tmp_path,
        inject=inject,
        broadcast_raw=broadcast_raw,
        extra_broadcasts=odd_broadcasts,
    )
    assert tally.dead == 13


# -- Redis ----------------------------------------------------------------


@pytest.mark.redis
async def test_redis_worker_survives_poison(tmp_path: Path, redis_server) -> None:
    """Poison stream entries in Redis (bad bodies, a non-numeric or missing
    field, streams without the consumer group, sorted-set members no script
    wrote) never stall the queue: bad ones are dead-lettered, odd but valid
    ones run once; malformed PUBLISHes are dropped, and a shutdown published
    for database 0 does not reach the worker on database 13."""
    ns = f"h{uuid.uuid4().hex[:10]}"
    base = f"redis://127.0.0.1:{redis_server.port}"
    url = f"{base}/13?namespace={ns}"
    raw = redis.Redis.from_url(f"{base}/13")
    zero = redis.Redis.from_url(f"{base}/0")
    keys = Keys(ns, db=13)
    qk = keys.queue("default")

    def run(fn: Any, *args: Any) -> Any:
        return trio.to_thread.run_sync(lambda: fn(*args))

    async def inject(client: stem.Client) -> list[Case]:
        cases = queue_poison()
        for case in cases:
            await run(raw.xadd, qk[0], {"b": case.body, "n": "0"})
        cases += [
            Case("n field not a number", "runs", task_id="p-n"),
            Case("entry without a body field", "dead", "decode-error", body=b""),
            Case(
                "stream without the consumer group (bad body)",
                "dead",
                "decode-error",
                body=b"{no group",
            ),
            Case("stream without the consumer group", "runs", task_id="p-nogroup"),
            Case("delayed member no script wrote", "runs", task_id="p-zset"),
            Case("delayed member without a body", "ignored"),
            Case("lease members no script wrote", "ignored"),
        ]
        await run(raw.xadd, qk[0], {"b": text(envelope("p-n")), "n": "many"})
        await run(raw.xadd, qk[0], {"x": "y"})
        await run(raw.xadd, qk[4], {"b": b"{no group"})
        await run(raw.xadd, qk[4], {"b": text(envelope("p-nogroup"))})
        await run(raw.zadd, qk[10], {"garbage": 0, "orphan": 0})
        await run(raw.hset, qk[11], "garbage", text(envelope("p-zset")))
        await run(raw.zadd, qk[13], {"x|y": 0, "9|not-an-id": 0, "|": 0})
        return cases

    async def broadcast_raw(client: stem.Client, body: bytes) -> None:
        await run(raw.publish, keys.broadcast, body)

    async def other_databases(client: stem.Client) -> int:
        """A hard shutdown on database 0's channel (and on the channel name
        before databases were told apart) must not reach database 13."""
        order = text(
            {
                "kind": "stem.control",
                "request_id": "stop-0",
                "command": "shutdown",
                "args": {"mode": "hard"},
                "destination": None,
            }
        )
        await run(zero.publish, Keys(ns, db=0).broadcast, order)
        await run(zero.publish, f"{ns}:broadcast", order)
        return 2

    try:
        tally = await run_against_worker(
            "redis",
            url,
            tmp_path,
            inject=inject,
            broadcast_raw=broadcast_raw,
            extra_broadcasts=other_databases,
        )
    finally:
        raw.close()
        zero.close()
    assert tally.dead == 13
    assert tally.ran == 3


# -- Postgres -------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_worker_survives_poison(tmp_path: Path, postgres_url) -> None:
    """Poison rows in the Postgres jobs table are dead-lettered with their
    reason (a priority the column holds but the envelope must not, bodies
    that are not envelopes), malformed NOTIFY payloads on the control
    channel are dropped, and every good task succeeds exactly once in a
    worker that stays up."""
    url = postgres_url

    async def inject(client: stem.Client) -> list[Case]:
        backend: Any = client.backend
        cases = queue_poison()
        cases.append(
            Case("priority column 5, body priority 0", "runs", task_id="p-col")
        )
        rows = [(c.task_id, 0, c.body) for c in cases[:-1]]
        rows.append(("p-col", 5, text(envelope("p-col"))))
        sql = (
            f"INSERT INTO {backend.config.quoted_schema}.jobs "
            "(queue, task_id, priority, ready_at, body) "
            "VALUES ('default', $1, $2, 0, $3)"
        )

        async def insert(conn: Any) -> None:
            await conn.executemany(sql, rows)

        await backend.db.run(insert)
        return cases

    async def broadcast_raw(client: stem.Client, body: bytes) -> None:
        backend: Any = client.backend
        channel = backend.config.channel("control")
        payload = body.decode("utf-8", "replace")

        async def notify(conn: Any) -> None:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

        await backend.db.run(notify)

    tally = await run_against_worker(
        "postgres", url, tmp_path, inject=inject, broadcast_raw=broadcast_raw
    )
    assert tally.dead == 11
    assert tally.ran == 1
