"""Contract checks for the event log (``backend.events``, an
:class:`stem.contracts.EventStore`).

A backend without an event log skips them with the reason printed. See
:mod:`stem.testing._checks_broker` for the conventions.
"""

from __future__ import annotations

import trio

from stem.contracts import EventStore

from ._harness import Harness
from ._skip import skip


def _events(h: Harness) -> EventStore:
    store = getattr(h.backend, "events", None)
    if store is None:
        skip(
            f"backend {h.backend.capabilities.name!r} has no event log "
            "(no `events` attribute): events stay in each process"
        )
    assert isinstance(store, EventStore)
    return store


async def check_events_append_read(h: Harness) -> None:
    """Appended records are read back in order after a cursor, in pages of
    ``limit``, with growing cursors and their bodies unchanged."""
    ev = _events(h)
    start = await ev.last_cursor()
    assert await ev.read(start) == []
    bodies = [b'{"n": %d}' % i for i in range(5)]
    last = await ev.append(bodies[:2])
    assert last == await ev.last_cursor()
    assert await ev.append(bodies[2:]) == await ev.last_cursor()
    got = await ev.read(start, limit=100)
    assert [r.body for r in got] == bodies
    cursors = [r.cursor for r in got]
    assert cursors == sorted(set(cursors))
    assert cursors[0] > start
    assert cursors[1] == last
    assert [r.body for r in await ev.read(start, limit=2)] == bodies[:2]
    assert [r.body for r in await ev.read(last, limit=100)] == bodies[2:]
    assert await ev.read(cursors[-1]) == []
    assert await ev.append([]) == cursors[-1]


async def check_events_foreign_bodies(h: Harness) -> None:
    """Any bytes are stored and read back as they are (the reader decodes
    them, so a foreign writer's record cannot break the log)."""
    ev = _events(h)
    start = await ev.last_cursor()
    odd = [b"", b"not json", b"\x00\xff\xfe", b"[1, 2]", b"x" * 70_000]
    await ev.append(odd)
    assert [r.body for r in await ev.read(start, limit=10)] == odd


async def check_events_bounded(h: Harness) -> None:
    """Only the newest ``capacity`` records are kept; a reader behind the
    oldest kept one gets what is left, oldest first."""
    ev = _events(h)
    start = await ev.last_cursor()
    total = ev.capacity + 3
    step = 2_000
    for base in range(0, total, step):
        await ev.append([b"%d" % i for i in range(base, min(total, base + step))])
    got = await ev.read(start, limit=5)
    assert [r.body for r in got] == [b"%d" % i for i in range(3, 8)]
    seen = 0
    after = start
    while page := await ev.read(after, limit=5_000):
        seen += len(page)
        after = page[-1].cursor
    assert seen == ev.capacity
    assert after == await ev.last_cursor()


async def check_events_read_waits(h: Harness) -> None:
    """A read with ``wait`` returns the first record appended while it
    waits, and ``[]`` once the wait passes with none."""
    ev = _events(h)
    start = await ev.last_cursor()
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, ev.read, start, wait=60.0)
        await h.settle()
        assert not pending.done.is_set()
        await ev.append([b"wake"])
        with trio.fail_after(30):
            await pending.done.wait()
    assert [r.body for r in pending.result()] == [b"wake"]
    after = await ev.last_cursor()
    async with trio.open_nursery() as nursery:
        empty = h.start(nursery, ev.read, after, wait=1.0)
        await h.advance_until(empty, step=0.5, limit=30.0, what="an empty read")
    assert empty.result() == []


async def check_events_listeners(h: Harness) -> None:
    """Listeners count while their ttl lasts; renewing extends it, and
    unlisten removes one at once."""
    ev = _events(h)
    assert await ev.listeners() == 0
    await ev.listen("a", ttl=5.0)
    await ev.listen("b", ttl=20.0)
    assert await ev.listeners() == 2
    await ev.unlisten("b")
    assert await ev.listeners() == 1
    await h.advance(3.0)
    await ev.listen("a", ttl=5.0)
    await h.advance(3.0)
    assert await ev.listeners() == 1
    await h.advance(3.0)
    assert await ev.listeners() == 0
    await ev.unlisten("missing")
