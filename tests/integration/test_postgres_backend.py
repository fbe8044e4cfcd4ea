"""Postgres-specific behaviour: plans, migrations, cross-process wakeups, URLs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import trio
import trio_asyncio

from stem._clock import now
from stem._codec import encode_result
from stem._envelope import Envelope
from stem._errors import BrokerUnavailable, ConfigError
from stem._result import TaskResult
from stem._states import TaskState
from stem._wfcodec import encode_run
from stem.adapters.postgres import _schema, migrate, open_backend, parse_url
from stem.adapters.postgres._broker import _Sql
from stem.adapters.postgres._schema import MIGRATIONS
from stem.contracts import WorkflowRun
from tests.fixtures_postgres import fresh_schema_url

pytestmark = pytest.mark.postgres

ROOT = __file__.rsplit("/tests/", 1)[0]


def _env(i: int, queue: str = "default", priority: int = 0) -> Envelope:
    return Envelope(id=f"t{i:06d}", name="noop", queue=queue, priority=priority)


async def _psql(url: str, sql: str, *args: object) -> list[object]:
    import asyncpg

    dsn = url.split("?", 1)[0]

    async def run() -> list[object]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async with trio_asyncio.open_loop():
        return await trio_asyncio.aio_as_trio(run)()


def test_url_options_and_redaction() -> None:
    """Our query parameters are stripped from the DSN; sslmode and the
    password reach asyncpg, and the reported URL hides the password."""
    cfg = parse_url(
        "postgresql://u:secret@db:5433/app?schema=jobs&sslmode=require&poll_interval=2"
    )
    assert cfg.schema == "jobs"
    assert cfg.poll_interval == 2.0
    assert "schema" not in cfg.dsn
    assert "poll_interval" not in cfg.dsn
    assert "sslmode=require" in cfg.dsn
    assert "secret" in cfg.dsn
    assert "secret" not in cfg.url
    assert "***" in cfg.url
    assert "schema=jobs" in cfg.url
    assert parse_url("postgres://h/db").schema == "stem"
    with pytest.raises(ConfigError):
        parse_url("postgresql://h/db?schema=bad-name;drop")
    with pytest.raises(ConfigError):
        parse_url("postgresql://h/db", nonsense=1)


async def test_claim_query_uses_its_index(postgres_url: str) -> None:
    """The batched SKIP LOCKED claim reads the jobs_claim index, not the table."""
    async with open_backend(postgres_url) as backend:
        await backend.broker.publish([_env(i, priority=i % 3) for i in range(5000)])
        await backend.broker.publish(
            [_env(i, queue="other") for i in range(5000, 6000)]
        )
    schema = parse_url(postgres_url).quoted_schema
    await _psql(postgres_url, f"ANALYZE {schema}.jobs")
    sql = _Sql(schema).claim
    plan = await _psql(
        postgres_url,
        f"EXPLAIN (FORMAT JSON) {sql}",
        ["default"],
        1e12,
        100,
        1e12 + 30,
        "token",
    )
    tree = json.loads(plan[0][0])  # type: ignore[index]
    scans: list[tuple[str, str]] = []

    def walk(node: dict) -> None:
        if node.get("Relation Name") == "jobs":
            scans.append((node["Node Type"], node.get("Index Name", "")))
        for child in node.get("Plans", ()):
            walk(child)

    walk(tree[0]["Plan"])
    text = json.dumps(tree, indent=1)
    assert ("Index Scan", "jobs_claim") in scans, text
    assert all(kind != "Seq Scan" for kind, _ in scans), text


async def test_concurrent_migrations_apply_once(postgres_server) -> None:
    """Many processes migrating one schema at once apply each version once."""
    url = fresh_schema_url(postgres_server.url)
    script = textwrap.dedent(
        f"""
        import sys, trio
        sys.path.insert(0, {ROOT!r})
        from stem.adapters.postgres import migrate
        print(trio.run(migrate, {url!r}))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sorted(outputs).count("[]") == 5, outputs
    assert await migrate(url) == []
    schema = parse_url(url).quoted_schema
    rows = await _psql(url, f"SELECT version FROM {schema}.migrations")
    assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]  # type: ignore[index]


async def test_claim_woken_by_publish_from_another_process(postgres_url: str) -> None:
    """A claim blocked with a long fallback poll is woken by NOTIFY when
    another process publishes, within milliseconds."""
    async with open_backend(postgres_url, poll_interval=30) as backend:
        script = textwrap.dedent(
            f"""
            import sys, trio
            sys.path.insert(0, {ROOT!r})
            from stem.adapters.postgres import open_backend
            from stem._envelope import Envelope
            async def main():
                async with open_backend({postgres_url!r}) as b:
                    await trio.sleep(0.5)
                    await b.broker.publish([Envelope(id="remote", name="noop")])
            trio.run(main)
            """
        )
        proc = await trio.lowlevel.open_process([sys.executable, "-c", script])
        try:
            with trio.fail_after(20):
                deliveries = await backend.broker.claim(
                    ["default"], limit=10, lease=30, consumer="c", wait=15
                )
            assert [d.task_id for d in deliveries] == ["remote"]
        finally:
            with trio.fail_after(20):
                await proc.wait()


async def test_result_wait_woken_across_backends(postgres_url: str) -> None:
    """wait() is woken by a result written through another backend instance
    (its own pool and LISTEN connection), not by the fallback poll."""
    async with (
        open_backend(postgres_url, poll_interval=30) as waiter_side,
        open_backend(postgres_url, poll_interval=30) as writer_side,
    ):

        async def write_later() -> None:
            await trio.sleep(0.2)
            await writer_side.results.set_state(
                [TaskResult(task_id="x", state=TaskState.SUCCEEDED, value=7)]
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_later)
            start = trio.current_time()
            result = await waiter_side.results.wait("x", timeout=10)
        assert result is not None
        assert result.value == 7
        assert trio.current_time() - start < 2


async def test_broadcast_reaches_every_subscriber(postgres_url: str) -> None:
    """A broadcast reaches subscribers of every backend sharing the schema."""
    async with (
        open_backend(postgres_url) as one,
        open_backend(postgres_url) as two,
        one.broker.subscribe() as sub_one,
        two.broker.subscribe() as sub_two,
    ):
        await two.broker.broadcast({"command": "ping", "n": 1})
        with trio.fail_after(5):
            assert await sub_one.receive() == {"command": "ping", "n": 1}
            assert await sub_two.receive() == {"command": "ping", "n": 1}


async def test_concurrent_claimers_never_share_a_message(postgres_url: str) -> None:
    """Claimers racing over one queue with SKIP LOCKED each get distinct
    messages, and together get all of them."""
    total = 2000
    seen: list[str] = []
    async with open_backend(postgres_url, pool_max=8) as backend:
        await backend.broker.publish([_env(i) for i in range(total)])

        async def consumer() -> None:
            while True:
                batch = await backend.broker.claim(
                    ["default"], limit=50, lease=30, consumer="c", wait=0.2
                )
                if not batch:
                    return
                seen.extend(d.task_id for d in batch)
                await backend.broker.ack(batch)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(consumer)
    assert len(seen) == total
    assert len(set(seen)) == total


async def test_unreachable_server_raises_broker_unavailable(postgres_server) -> None:
    """Opening a backend on a port nobody listens on fails fast with
    BrokerUnavailable and a redacted URL."""
    from tests._servers import free_port

    url = f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db?schema=x"
    with trio.fail_after(20):
        with pytest.raises(BrokerUnavailable) as info:
            async with open_backend(url):
                pass
    assert "hunter2" not in str(info.value)


async def test_many_results_notify_in_chunks(postgres_url: str) -> None:
    """A large set_state batch (payload over NOTIFY's limit) still wakes
    waiters of its last task."""
    async with (
        open_backend(postgres_url, poll_interval=30) as a,
        open_backend(postgres_url, poll_interval=30) as b,
    ):
        results = [
            TaskResult(task_id=f"task-{i:040d}", state=TaskState.SUCCEEDED)
            for i in range(1000)
        ]

        async def write_later() -> None:
            await trio.sleep(0.2)
            assert all(await b.results.set_state(results))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_later)
            with trio.fail_after(5):
                got = await a.results.wait(results[-1].task_id, timeout=10)
        assert got is not None
        assert got.ok


async def test_rows_written_before_migration_4_stay_readable(
    postgres_server, monkeypatch
) -> None:
    """A schema at migration 3 (no run version column, no group forget time)
    opens at the latest: its run keeps its version (claimed only by an
    engine that has it) with fencing token 0, a body that does not parse
    does not stop the migration, and its group keeps its members."""
    url = fresh_schema_url(postgres_server.url)
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:3])
    monkeypatch.setattr(_schema, "LATEST", 3)
    assert await migrate(url) == [1, 2, 3]
    monkeypatch.undo()
    at = now()
    body = json.loads(
        encode_run(WorkflowRun(run_id="r", workflow="wf", version=2, due_at=at))
    )
    del body["fence"]
    member = encode_result(TaskResult(task_id="m0", state=TaskState.SUCCEEDED))
    s = parse_url(url).quoted_schema
    await _psql(
        url,
        f"INSERT INTO {s}.wf_runs (run_id, workflow, status, parent_id, created_at, "
        "due_at, body) VALUES ('r', 'wf', 'pending', NULL, $1, $1, $2)",
        at,
        json.dumps(body),
    )
    await _psql(
        url,
        f"INSERT INTO {s}.wf_runs (run_id, workflow, status, parent_id, created_at, "
        "due_at, body) VALUES ('bad', 'wf', 'pending', NULL, $1, NULL, 'not json')",
        at,
    )
    await _psql(url, f"INSERT INTO {s}.groups VALUES ('g', 1, $1)", at + 600)
    await _psql(
        url,
        f"INSERT INTO {s}.group_members VALUES ('g', 0, $1, $2)",
        member,
        at + 600,
    )
    assert (await migrate(url))[0] == 4  # and any later ones
    versions = await _psql(url, f"SELECT run_id, version FROM {s}.wf_runs ORDER BY 1")
    assert [tuple(row) for row in versions] == [("bad", 1), ("r", 2)]  # type: ignore[arg-type]
    async with open_backend(url) as backend:
        store = backend.workflows
        old = await store.get_run("r")
        assert old is not None and (old.version, old.fence) == (2, 0)
        assert (
            await store.claim("e", names=["wf"], lease=5, max_versions={"wf": 1}) == []
        )
        (claimed,) = await store.claim(
            "e", names=["wf"], lease=5, max_versions={"wf": 2}
        )
        assert claimed.fence == 1
        assert sorted(await backend.results.group_results("g")) == [0]
        added = await backend.results.group_add(
            "g", 1, TaskResult(task_id="m1", state=TaskState.SUCCEEDED), ttl=600
        )
        assert added == 2
