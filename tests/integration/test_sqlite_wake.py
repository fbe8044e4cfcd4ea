"""Processes sharing a SQLite file wake each other through datagram sockets
beside it (stem/adapters/sqlite/_wake.py), polling only as the fallback.

These tests set the fallback poll to an hour: a claim, wait or subscriber that
returns was woken by a datagram, not by the poll. Latency itself is measured
in benchmarks/latency.py, never asserted here.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import trio

from stem import Envelope, TaskResult, TaskState
from stem.adapters.sqlite import open_backend
from stem.adapters.sqlite._wake import Wake, wake_dir

ROOT = Path(__file__).resolve().parents[2]
NO_POLL = "poll_interval=3600"


def env(task_id: str) -> Envelope:
    return Envelope(id=task_id, name="t", queue="default")


async def test_claim_wait_and_broadcast_woken_by_another_backend(tmp_path):
    """A publish, a terminal result and a broadcast through one backend wake
    a claim, a result wait and a subscriber of another on the same file."""
    url = f"sqlite:///{tmp_path / 'x.db'}?{NO_POLL}"
    async with (
        open_backend(url) as a,
        open_backend(url) as b,
        a.broker.subscribe() as inbox,
        trio.open_nursery() as nursery,
    ):
        assert a.db.wake.active and b.db.wake.active

        async def produce():
            await trio.sleep(0.05)
            await b.broker.publish([env("x")])
            await trio.sleep(0.05)
            await b.results.set_state(
                [TaskResult(task_id="x", state=TaskState.SUCCEEDED, value=3)]
            )
            await trio.sleep(0.05)
            await b.broker.broadcast({"cmd": "ping"})

        nursery.start_soon(produce)
        with trio.fail_after(20):
            got = await a.broker.claim(
                ["default"], limit=5, lease=5, consumer="c", wait=600
            )
            assert [d.task_id for d in got] == ["x"]
            res = await a.results.wait("x", timeout=600)
            assert res is not None and res.value == 3
            assert await inbox.receive() == {"cmd": "ping"}
        assert b.db.wake.sent >= 3
        assert a.db.wake.received >= 3


async def test_publish_from_another_process_wakes_a_claim(tmp_path):
    """A message published by a separate Python process wakes a claim here
    whose fallback poll is an hour away."""
    url = f"sqlite:///{tmp_path / 'x.db'}?{NO_POLL}"
    code = (
        "import sys, trio\n"
        "from stem import Envelope\n"
        "from stem.adapters.sqlite import open_backend\n"
        "async def main():\n"
        "    async with open_backend(sys.argv[1]) as b:\n"
        "        await b.broker.publish([Envelope(id='p', name='t')])\n"
        "trio.run(main)\n"
    )
    async with open_backend(url) as a:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: trio.run_process(
                        [sys.executable, "-c", code, url], cwd=ROOT, check=True
                    )
                )
                got = await a.broker.claim(
                    ["default"], limit=5, lease=5, consumer="c", wait=600
                )
        assert [d.task_id for d in got] == ["p"]
        assert a.db.wake.received >= 1


async def test_datagrams_carry_kinds_and_ignore_junk(tmp_path):
    """A burst of datagrams fires once with the known kinds it named; bytes
    that name no kind fire nothing."""
    db = str(tmp_path / "x.db")
    receiver, sender = Wake(db), Wake(db)
    assert receiver.open() and sender.open()
    fired: list[frozenset[int]] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver.run, fired.append)
            sender.notify(b"\x00\xffjunk")
            sender.notify(b"q")
            sender.notify(b"r")
            with trio.fail_after(10):
                while ord("r") not in set().union(*fired):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    finally:
        receiver.close()
        sender.close()
    seen = set().union(*fired)
    assert seen == {ord("q"), ord("r")}
    assert all(kinds for kinds in fired)
    assert receiver.received == 3


async def test_socket_of_a_dead_process_is_removed_and_own_is_unlinked(tmp_path):
    """A socket file nobody is bound to (its process was killed) is removed by
    the first wake that finds it; closing removes a backend's own socket."""
    db = str(tmp_path / "x.db")
    os.makedirs(wake_dir(db))
    stale = os.path.join(wake_dir(db), "999999-dead.sock")
    orphan = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan.bind(stale)
    orphan.close()  # the file stays, nothing listens: like a SIGKILLed process
    wake = Wake(db)
    assert wake.open()
    own = wake.path
    assert own is not None and os.path.exists(own)
    wake.notify(b"q")
    assert not os.path.exists(stale)
    assert wake.sent == 0
    wake.close()
    assert not os.path.exists(own)
    assert os.listdir(wake_dir(db)) == []


async def test_too_long_a_path_falls_back_to_polling(tmp_path):
    """Where no socket can be bound (the path exceeds a socket address), the
    backend has no wake and another backend's publish is seen by the poll."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    url = f"sqlite:///{deep / 'x.db'}?poll_interval=0.02"
    async with open_backend(url) as a, open_backend(url) as b:
        assert not a.db.wake.active
        b.db.wake.notify(b"q")  # a no-op without a socket
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def produce():
                    await trio.sleep(0.05)
                    await b.broker.publish([env("y")])

                nursery.start_soon(produce)
                got = await a.broker.claim(
                    ["default"], limit=5, lease=5, consumer="c", wait=600
                )
        assert [d.task_id for d in got] == ["y"]
        assert a.db.wake.received == 0
