"""Quick checks of the redis backend against a real redis-server."""

from __future__ import annotations

from stem._envelope import Envelope


async def test_publish_claim_ack(redis_backend_factory) -> None:
    """A published envelope is claimed once and gone after ack."""
    async with redis_backend_factory() as backend:
        env = Envelope(id="t1", name="x", queue="q")
        await backend.broker.publish([env])
        got = await backend.broker.claim(["q"], limit=10, lease=30, consumer="c1")
        assert [d.task_id for d in got] == ["t1"]
        assert got[0].delivery_count == 1
        assert await backend.broker.claim(["q"], limit=10, lease=30, consumer="c1") == []
        await backend.broker.ack(got)
        stats = await backend.broker.stats("q")
        assert (stats.pending, stats.in_flight) == (0, 0)
