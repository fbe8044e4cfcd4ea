"""Redis pub/sub is server-wide: channels must tell databases (and
namespaces) apart, or a PUBLISH on one database reaches workers on another."""

from __future__ import annotations

import uuid

import pytest
import trio

from stem.adapters.redis import open_backend
from stem.adapters.redis._conn import Keys

pytestmark = pytest.mark.redis


def test_channels_carry_the_database_and_the_namespace() -> None:
    """Every channel name differs between databases and between namespaces."""
    a, b, c = Keys("ns", db=0), Keys("ns", db=13), Keys("other", db=0)
    assert len({k.broadcast for k in (a, b, c)}) == 3
    assert len({k.wake("q") for k in (a, b, c)}) == 3
    assert len({k.done("t") for k in (a, b, c)}) == 3


async def test_broadcast_on_one_database_never_reaches_another(redis_server) -> None:
    """A broadcast on database 0 does not reach a subscriber of the same
    namespace on database 13; one on database 13 does."""
    ns = f"h{uuid.uuid4().hex[:10]}"
    base = f"redis://127.0.0.1:{redis_server.port}"
    async with (
        open_backend(f"{base}/0", namespace=ns) as zero,
        open_backend(f"{base}/13", namespace=ns) as thirteen,
    ):
        async with thirteen.broker.subscribe() as inbox:
            await zero.broker.broadcast({"kind": "test", "db": 0})
            with trio.move_on_after(0.5):
                message = await inbox.receive()
                pytest.fail(f"database 13 heard database 0: {message}")
            await thirteen.broker.broadcast({"kind": "test", "db": 13})
            with trio.fail_after(5):
                assert await inbox.receive() == {"kind": "test", "db": 13}
