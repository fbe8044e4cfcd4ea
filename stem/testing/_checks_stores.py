"""Contract checks for the non-broker stores: results, groups, one-shot
claims, unique keys, heartbeats, locks, revocations, rate limits.

See :mod:`stem.testing._checks_broker` for the conventions.
"""

from __future__ import annotations

import trio

import stem
from stem import ErrorInfo, TaskResult, TaskState
from stem.contracts import Revocation, WorkerInfo

from ._harness import Harness, raises

TIME_EPS = 1e-3


# ---------------------------------------------------------------------------
# Results


def _result(task_id: str, state: TaskState, **kw: object) -> TaskResult:
    return TaskResult(
        task_id=task_id,
        state=state,
        name="contract.noop",
        queue="default",
        updated_at=stem.now(),
        **kw,  # type: ignore[arg-type]
    )


async def check_result_set_get(h: Harness) -> None:
    """set_state stores records; get and get_many read them back."""
    r1 = _result("t1", TaskState.QUEUED, attempt=1, meta={"k": "v"})
    r2 = _result("t2", TaskState.SUCCEEDED, value={"out": [1, "two"]}, attempt=1)
    assert await h.results.set_state([r1, r2]) == [True, True]
    got = await h.results.get("t1")
    assert got is not None
    assert (got.task_id, got.state, got.attempt, got.name, got.queue) == (
        "t1",
        TaskState.QUEUED,
        1,
        "contract.noop",
        "default",
    )
    assert got.meta == {"k": "v"}
    many = await h.results.get_many(["t2", "missing", "t1"])
    assert many[1] is None
    assert many[0] is not None
    assert many[0].value == {"out": [1, "two"]}
    assert many[2] is not None
    assert many[2].state is TaskState.QUEUED
    assert await h.results.get("missing") is None


async def check_result_overwrite_clears_error(h: Harness) -> None:
    """A later write replaces the record whole, clearing an earlier error."""
    error = ErrorInfo(type="ValueError", message="boom", traceback="tb")
    await h.results.set_state(
        [_result("t", TaskState.RETRYING, error=error, attempt=1)]
    )
    got = await h.results.get("t")
    assert got is not None
    assert got.error == error
    await h.results.set_state([_result("t", TaskState.RUNNING, attempt=2)])
    got = await h.results.get("t")
    assert got is not None
    assert got.state is TaskState.RUNNING
    assert got.error is None
    assert got.attempt == 2


async def check_result_terminal_is_final(h: Harness) -> None:
    """A terminal record is final: a later write yields False and changes
    nothing."""
    await h.results.set_state([_result("t", TaskState.SUCCEEDED, value=1, attempt=1)])
    flags = await h.results.set_state(
        [
            _result("t", TaskState.FAILED, error=ErrorInfo(type="E", message="m")),
            _result("u", TaskState.RUNNING),
            _result("t", TaskState.RUNNING),
        ]
    )
    assert flags == [False, True, False]
    got = await h.results.get("t")
    assert got is not None
    assert got.state is TaskState.SUCCEEDED
    assert got.value == 1
    assert got.error is None


async def check_result_progress(h: Harness) -> None:
    """A record's progress (``ctx.progress``) round-trips through set_state,
    get and get_many; a later report replaces it, the terminal record keeps
    its own, and a report written after the terminal record changes
    nothing."""
    first = stem.Progress(done=3, total=10, info={"stage": "scan", "é": [1]}, at=5.0)
    await h.results.set_state([_result("p", TaskState.RUNNING, progress=first)])
    got = await h.results.get("p")
    assert got is not None
    assert got.progress == first
    assert got.progress.fraction == 0.3
    later = stem.Progress(done=7.5, at=6.0)  # total unknown, no info
    await h.results.set_state([_result("p", TaskState.RUNNING, progress=later)])
    (many,) = await h.results.get_many(["p"])
    assert many is not None
    assert many.progress == later
    last = stem.Progress(done=10, total=10, at=7.0)
    await h.results.set_state(
        [_result("p", TaskState.SUCCEEDED, value="ok", progress=last)]
    )
    assert await h.results.set_state(
        [_result("p", TaskState.RUNNING, progress=first)]
    ) == [False]
    got = await h.results.get("p")
    assert got is not None
    assert (got.state, got.value, got.progress) == (TaskState.SUCCEEDED, "ok", last)
    await h.results.set_state([_result("q", TaskState.RUNNING)])
    plain = await h.results.get("q")
    assert plain is not None
    assert plain.progress is None


async def check_result_wait_woken_by_write(h: Harness) -> None:
    """wait is woken by the terminal write from another task (no clock
    movement), not by a non-terminal one."""
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, h.results.wait, "t", timeout=30.0)
        await h.settle()
        assert not pending.done.is_set()
        await h.results.set_state([_result("t", TaskState.RUNNING)])
        await h.settle()
        assert not pending.done.is_set(), "wait returned for a non-terminal state"
        await h.results.set_state([_result("t", TaskState.SUCCEEDED, value="ok")])
        await h.eventually(pending.done.is_set, "wait woken by the write")
    got = pending.result()
    assert got is not None
    assert got.state is TaskState.SUCCEEDED
    assert got.value == "ok"


async def check_result_wait_existing(h: Harness) -> None:
    """wait returns at once when the terminal record is already there."""
    await h.results.set_state(
        [_result("t", TaskState.FAILED, error=ErrorInfo(type="E", message="m"))]
    )
    got = await h.results.wait("t", timeout=30.0)
    assert got is not None
    assert got.state is TaskState.FAILED


async def check_result_wait_timeout(h: Harness) -> None:
    """wait returns None after its timeout, not before."""
    async with trio.open_nursery() as nursery:
        pending = h.start(nursery, h.results.wait, "t", timeout=2.0)
        await h.settle()
        await h.advance(1.0)
        assert not pending.done.is_set()
        await h.advance_until(pending, step=0.5, limit=10.0, what="wait timeout")
    assert pending.result() is None


async def check_result_ttl_expiry(h: Harness) -> None:
    """A record written with a ttl is gone once the ttl passes."""
    await h.results.set_state([_result("t", TaskState.SUCCEEDED, value=1)], ttl=2.0)
    await h.results.set_state([_result("keep", TaskState.SUCCEEDED, value=2)])
    await h.advance(1.0)
    assert await h.results.get("t") is not None
    await h.advance(1.5)
    assert await h.results.get("t") is None
    many = await h.results.get_many(["t", "keep"])
    assert many[0] is None
    assert many[1] is not None


async def check_result_create_only_when_absent(h: Harness) -> None:
    """create stores a record only where the task has none live (terminal
    ones included); an expired record is replaced; an id repeated in one
    call is created once."""
    assert await h.results.create([_result("t", TaskState.QUEUED, attempt=1)]) == [True]
    again = _result("t", TaskState.QUEUED, attempt=1, meta={"second": True})
    assert await h.results.create([again]) == [False]
    got = await h.results.get("t")
    assert got is not None
    assert got.meta == {}
    await h.results.set_state([_result("t", TaskState.SUCCEEDED, value=1)], ttl=2.0)
    assert await h.results.create([again]) == [False]
    got = await h.results.get("t")
    assert got is not None
    assert got.state is TaskState.SUCCEEDED
    await h.advance(2.5)
    assert await h.results.create([again], ttl=5.0) == [True]
    got = await h.results.get("t")
    assert got is not None
    assert got.meta == {"second": True}
    pair = [_result("p", TaskState.QUEUED, value=n) for n in (1, 2)]
    assert await h.results.create(pair) == [True, False]
    got = await h.results.get("p")
    assert got is not None
    assert got.value == 1
    await h.advance(5.5)
    assert await h.results.get("t") is None


async def check_result_create_single_winner(h: Harness) -> None:
    """Of many concurrent creates of one task id exactly one stores it."""
    wins: list[int] = []

    async def attempt(i: int) -> None:
        record = _result("race", TaskState.QUEUED, value=i)
        if await h.results.create([record]) == [True]:
            wins.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(attempt, i)
    assert len(wins) == 1
    got = await h.results.get("race")
    assert got is not None
    assert got.value == wins[0]


async def check_result_forget(h: Harness) -> None:
    """forget deletes a record."""
    await h.results.set_state([_result("t", TaskState.SUCCEEDED)])
    await h.results.forget("t")
    assert await h.results.get("t") is None
    await h.results.forget("never-there")


async def check_group_add_counts_distinct(h: Harness) -> None:
    """group_add counts distinct indices; re-adding an index does not count
    twice and the last write wins."""
    assert (
        await h.results.group_add("g", 0, _result("a", TaskState.SUCCEEDED, value=0))
        == 1
    )
    assert await h.results.group_add("g", 1, _result("b", TaskState.FAILED)) == 2
    assert (
        await h.results.group_add("g", 1, _result("b", TaskState.SUCCEEDED, value=1))
        == 2
    )
    assert (
        await h.results.group_add("g", 2, _result("c", TaskState.SUCCEEDED, value=2))
        == 3
    )
    assert await h.results.group_add("other", 0, _result("d", TaskState.SUCCEEDED)) == 1
    members = await h.results.group_results("g")
    assert sorted(members) == [0, 1, 2]
    assert members[1].state is TaskState.SUCCEEDED
    assert members[1].value == 1
    assert await h.results.group_results("missing") == {}


async def check_group_add_concurrent(h: Harness) -> None:
    """Concurrent group_add calls for distinct indices count each once."""
    counts: list[int] = []

    async def add(i: int) -> None:
        counts.append(
            await h.results.group_add(
                "g", i, _result(f"m{i}", TaskState.SUCCEEDED, value=i)
            )
        )

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(add, i)
    assert sorted(counts) == list(range(1, 21))


async def check_group_expiry_refuses_late_members(h: Harness) -> None:
    """A group expires ttl seconds after its latest add, by the client's
    clock: then it has no members and a late member raises GroupExpired,
    changing nothing, until another ttl has passed; a group without ttl never
    expires."""
    ok = TaskState.SUCCEEDED
    assert await h.results.group_add("g", 0, _result("a", ok, value=0), ttl=10) == 1
    await h.results.group_add("forever", 0, _result("f", ok), ttl=None)
    await h.advance(6.0)
    assert await h.results.group_add("g", 1, _result("b", ok, value=1), ttl=10) == 2
    await h.advance(6.0)  # 12 s after the first add, 6 after the latest
    assert sorted(await h.results.group_results("g")) == [0, 1]
    await h.advance(5.0)  # 11 s after the latest add: expired
    assert await h.results.group_results("g") == {}
    with raises(stem.GroupExpired):
        await h.results.group_add("g", 2, _result("c", ok, value=2), ttl=10)
    with raises(stem.GroupExpired):
        await h.results.group_add("g", 0, _result("a", ok, value=0), ttl=10)
    assert await h.results.group_results("g") == {}
    await h.advance(10.0)  # past the forget time: the id starts a new group
    assert await h.results.group_add("g", 2, _result("c", ok, value=2), ttl=10) == 1
    assert sorted(await h.results.group_results("g")) == [2]
    await h.advance(1000.0)
    assert await h.results.group_add("forever", 1, _result("f2", ok), ttl=None) == 2


async def check_claim_once_single_winner(h: Harness) -> None:
    """Among many concurrent callers exactly one wins claim_once."""
    wins: list[str] = []

    async def attempt(i: int) -> None:
        if await h.results.claim_once("chord:cb", f"owner-{i}"):
            wins.append(f"owner-{i}")

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(attempt, i)
    assert len(wins) == 1
    assert await h.results.claim_once("chord:cb", "late") is False
    assert await h.results.claim_once("chord:other", "late") is True


async def check_claim_once_ttl(h: Harness) -> None:
    """A claim_once with a ttl can be won again after the ttl passes."""
    assert await h.results.claim_once("k", "a", ttl=2.0) is True
    await h.advance(1.0)
    assert await h.results.claim_once("k", "b", ttl=2.0) is False
    await h.advance(1.5)
    assert await h.results.claim_once("k", "b", ttl=2.0) is True


async def check_reserve_release_unique(h: Harness) -> None:
    """reserve_unique keeps the first holder until it releases or its ttl
    passes; release by another task id changes nothing."""
    r = h.results
    assert await r.reserve_unique("u", "t1", ttl=None) == "t1"
    assert await r.reserve_unique("u", "t2", ttl=None) == "t1"
    await r.release_unique("u", "t2")
    assert await r.reserve_unique("u", "t2", ttl=None) == "t1"
    await r.release_unique("u", "t1")
    assert await r.reserve_unique("u", "t2", ttl=None) == "t2"
    assert await r.reserve_unique("v", "t3", ttl=2.0) == "t3"
    await h.advance(1.0)
    assert await r.reserve_unique("v", "t4", ttl=2.0) == "t3"
    await h.advance(1.5)
    assert await r.reserve_unique("v", "t4", ttl=2.0) == "t4"


# ---------------------------------------------------------------------------
# Heartbeats


def _worker(worker_id: str, **kw: object) -> WorkerInfo:
    at = stem.now()
    return WorkerInfo(
        worker_id=worker_id,
        hostname="host",
        pid=1234,
        queues=("default", "mail"),
        concurrency=8,
        started_at=at,
        last_seen=at,
        **kw,  # type: ignore[arg-type]
    )


async def check_heartbeats_ttl(h: Harness) -> None:
    """A worker is listed while its last beat is within its ttl."""
    hb = h.backend.heartbeats
    await hb.beat(_worker("w1"), ttl=2.0)
    await hb.beat(_worker("w2", processed=1), ttl=10.0)
    listed = {w.worker_id: w for w in await hb.workers()}
    assert set(listed) == {"w1", "w2"}
    w1 = listed["w1"]
    assert (w1.hostname, w1.pid, tuple(w1.queues), w1.concurrency) == (
        "host",
        1234,
        ("default", "mail"),
        8,
    )
    await h.advance(2.5)
    assert [w.worker_id for w in await hb.workers()] == ["w2"]
    await hb.beat(_worker("w2", processed=5, active=2), ttl=10.0)
    [w2] = await hb.workers()
    assert (w2.processed, w2.active) == (5, 2)
    await hb.forget("w2")
    assert await hb.workers() == []


# ---------------------------------------------------------------------------
# Locks


async def check_lock_owner_checks(h: Harness) -> None:
    """Only the owner renews or releases a lock; others cannot acquire it."""
    locks = h.backend.locks
    assert await locks.acquire("beat", "o1", ttl=10.0) is True
    assert await locks.acquire("beat", "o2", ttl=10.0) is False
    assert await locks.owner("beat") == "o1"
    assert await locks.renew("beat", "o2", ttl=10.0) is False
    assert await locks.renew("beat", "o1", ttl=10.0) is True
    assert await locks.release("beat", "o2") is False
    assert await locks.owner("beat") == "o1"
    assert await locks.release("beat", "o1") is True
    assert await locks.owner("beat") is None
    assert await locks.release("beat", "o1") is False
    assert await locks.acquire("beat", "o2", ttl=10.0) is True
    assert await locks.owner("beat") == "o2"
    assert await locks.owner("never") is None


async def check_lock_expiry(h: Harness) -> None:
    """A lock not renewed within its ttl expires; renewal pushes expiry out."""
    locks = h.backend.locks
    assert await locks.acquire("l", "o1", ttl=2.0) is True
    await h.advance(1.5)
    assert await locks.renew("l", "o1", ttl=2.0) is True
    await h.advance(1.0)  # past the first deadline, before the renewed one
    assert await locks.owner("l") == "o1"
    assert await locks.acquire("l", "o2", ttl=2.0) is False
    await h.advance(1.5)
    assert await locks.owner("l") is None
    assert await locks.renew("l", "o1", ttl=2.0) is False
    assert await locks.acquire("l", "o2", ttl=2.0) is True
    assert await locks.owner("l") == "o2"


# ---------------------------------------------------------------------------
# Revocations


async def check_revocation_versions(h: Harness) -> None:
    """Every upsert takes a higher version; changes_since returns what changed
    after a version and the latest version."""
    rs = h.backend.revocations
    v1 = await rs.revoke(Revocation(task_id="t1"))
    v2 = await rs.revoke(Revocation(task_id="t2", reason="operator"))
    v3 = await rs.revoke(Revocation(task_id="t1", terminate=True))
    assert v1 < v2 < v3
    found = await rs.is_revoked(["t1", "t2", "t3"])
    assert set(found) == {"t1", "t2"}
    assert found["t1"].terminate is True
    assert found["t1"].version == v3
    assert found["t2"].reason == "operator"
    assert found["t2"].version == v2
    changes, latest = await rs.changes_since(0)
    assert latest == v3
    assert sorted(r.task_id for r in changes) == ["t1", "t2"]
    changes, latest = await rs.changes_since(v2)
    assert [r.task_id for r in changes] == ["t1"]
    assert latest == v3
    assert await rs.changes_since(v3) == ([], v3)


async def check_revocation_expiry(h: Harness) -> None:
    """An expired revocation is no longer reported."""
    rs = h.backend.revocations
    await rs.revoke(Revocation(task_id="t", expires_at=stem.now() + 2.0))
    await rs.revoke(Revocation(task_id="forever"))
    assert set(await rs.is_revoked(["t", "forever"])) == {"t", "forever"}
    await h.advance(2.5)
    assert set(await rs.is_revoked(["t", "forever"])) == {"forever"}
    changes, _ = await rs.changes_since(0)
    assert [r.task_id for r in changes] == ["forever"]


async def check_claim_reports_revocations(h: Harness) -> None:
    """A backend that checks revocations within a claim
    (``Delivery.revocation_checked``) reports exactly what ``is_revoked``
    would: the live revocation of a revoked task, None otherwise (an expired
    one included). Backends that do not check leave it to the worker."""
    rs = h.backend.revocations
    await rs.revoke(Revocation(task_id="gone", reason="stop"))
    await rs.revoke(Revocation(task_id="old", expires_at=stem.now() + 1.0))
    await h.advance(1.5)
    await h.backend.broker.publish(
        [stem.Envelope(id=i, name="t", queue="rq") for i in ("gone", "kept", "old")]
    )
    got = await h.backend.broker.claim(["rq"], limit=10, lease=30, consumer="c")
    assert sorted(d.task_id for d in got) == ["gone", "kept", "old"]
    truth = await rs.is_revoked(["gone", "kept", "old"])
    assert set(truth) == {"gone"}
    for delivery in got:
        if not delivery.revocation_checked:
            assert delivery.revocation is None
            continue
        expected = truth.get(delivery.task_id)
        found = delivery.revocation
        if expected is None:
            assert found is None, delivery
        else:
            assert found is not None, delivery
            assert (found.task_id, found.reason, found.terminate) == (
                expected.task_id,
                expected.reason,
                expected.terminate,
            )


# ---------------------------------------------------------------------------
# Rate limits


async def check_rate_limit_even_refill(h: Harness) -> None:
    """A token bucket refills evenly: 5/s with burst 1 gives one token every
    0.2 s; a burst of 3 allows three at once."""
    h.require("global_rate_limits")
    lim = h.backend.limiter
    assert await lim.take("k", rate=5.0, burst=1) == 0.0
    wait = await lim.take("k", rate=5.0, burst=1)
    assert 0.15 < wait <= 0.2 + TIME_EPS
    await h.advance(0.25)
    assert await lim.take("k", rate=5.0, burst=1) == 0.0
    for _ in range(3):
        assert await lim.take("b", rate=1.0, burst=3) == 0.0
    assert await lim.take("b", rate=1.0, burst=3) > 0.5
    await h.advance(3.5)
    for _ in range(3):
        assert await lim.take("b", rate=1.0, burst=3) == 0.0
    assert await lim.take("b", rate=1.0, burst=3) > 0.0
