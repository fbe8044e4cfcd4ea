"""A stored workflow run that no longer decodes (a foreign write, a bad
migration) is set aside by the claim, never claimed again, and skipped by
listings: the engine and every other run carry on."""

from __future__ import annotations

from typing import Any

import pytest

import stem
from stem.contracts import WorkflowRun

BROKEN = "{broken"


async def _corrupt(kind: str, backend: Any, run_id: str) -> None:
    if kind == "sqlite":
        await backend.db.write(
            lambda conn: conn.execute(
                "UPDATE wf_runs SET body = ? WHERE run_id = ?", (BROKEN, run_id)
            )
        )
    elif kind == "postgres":
        sql = f"UPDATE {backend.config.quoted_schema}.wf_runs SET body = $1 WHERE run_id = $2"

        async def update(conn: Any) -> None:
            await conn.execute(sql, BROKEN, run_id)

        await backend.db.run(update)
    else:
        key = f"{backend.workflows.keys.ns}:{{{backend.workflows.keys.ns}:wf}}:runs"
        await backend.conn.run(lambda: backend.conn.client.hset(key, run_id, BROKEN))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def kind_and_factory(request: pytest.FixtureRequest) -> tuple[str, Any]:
    name = {
        "sqlite": "sqlite_backend_factory",
        "redis": "redis_backend_factory",
        "postgres": "postgres_backend_factory",
    }[request.param]
    return request.param, request.getfixturevalue(name)


async def test_an_undecodable_run_is_set_aside(kind_and_factory) -> None:
    """The claim returns the good runs and sets the undecodable one aside;
    later claims and listings go on without it."""
    kind, factory = kind_and_factory
    async with factory() as backend:
        store = backend.workflows
        at = stem.now()
        for run_id in ("good", "bad"):
            run = WorkflowRun(
                run_id=run_id, workflow="wf", created_at=at, updated_at=at, due_at=at
            )
            assert await store.create_run(run)
        await _corrupt(kind, backend, "bad")
        claimed = await store.claim("engine", names=["wf"], lease=30, limit=10)
        assert [r.run_id for r in claimed] == ["good"]
        assert await store.claim("engine", names=["wf"], lease=30, limit=10) == []
        assert [r.run_id for r in await store.list_runs()] == ["good"]
        with pytest.raises(stem.DecodeError):
            await store.get_run("bad")
