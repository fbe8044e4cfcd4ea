"""On one Redis the claim script also reads the claimed tasks' revocations,
so a worker needs no second round trip to drop a revoked task (issue 19)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import stem
from stem._envelope import Envelope
from stem.contracts import Revocation

pytestmark = pytest.mark.redis


async def test_claim_carries_each_delivery_revocation(redis_backend_factory) -> None:
    """A revoked task's delivery comes back checked with its revocation; a
    live one checked with none; an expired revocation counts as none."""
    async with redis_backend_factory() as backend:
        await backend.revocations.revoke(Revocation(task_id="gone", reason="nope"))
        await backend.revocations.revoke(
            Revocation(task_id="old", expires_at=stem.now() - 1)
        )
        await backend.broker.publish(
            [Envelope(id=i, name="x", queue="q") for i in ("gone", "kept", "old")]
        )
        got = await backend.broker.claim(["q"], limit=10, lease=30, consumer="c")
        by_id = {d.task_id: d for d in got}
        assert set(by_id) == {"gone", "kept", "old"}
        assert all(d.revocation_checked for d in got)
        gone = by_id["gone"].revocation
        assert gone is not None and gone.reason == "nope"
        assert by_id["kept"].revocation is None
        assert by_id["old"].revocation is None


async def test_body_not_in_canonical_form_is_left_to_the_worker(
    redis_backend_factory,
) -> None:
    """A foreign body the script cannot read an id from (not JSON) is handed
    out unchecked, so the worker's own lookup decides."""
    async with redis_backend_factory() as backend:
        await backend.broker.publish_raw("q", b"not json at all")
        await backend.broker.publish_raw("q", b'{"id":"x","v":1,"name":"t"}')
        got = await backend.broker.claim(["q"], limit=10, lease=30, consumer="c")
        assert len(got) == 2
        assert not any(d.revocation_checked for d in got)


async def test_worker_drops_a_task_revoked_before_its_claim(
    redis_backend_factory,
) -> None:
    """A task revoked while queued (its message still there) never runs: the
    worker settles it REVOKED from the claim's own check."""
    ran: list[str] = []

    @stem.task("t")
    async def t(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        ran.append(ctx.task_id)

    async with redis_backend_factory() as backend:
        await backend.revocations.revoke(Revocation(task_id="r1", reason="stop"))
        await backend.broker.publish(
            [Envelope(id="r1", name="t"), Envelope(id="ok", name="t")]
        )
        async with stem.Client(backend=backend, tasks=[t]) as client:
            async with client.worker(concurrency=2):
                with trio.fail_after(20):
                    done = await client.wait_for("ok", timeout=20)
                    revoked = await client.wait_for("r1", timeout=20)
    assert done.state is stem.TaskState.SUCCEEDED
    assert revoked.state is stem.TaskState.REVOKED
    assert ran == ["ok"]
