"""A hypothesis state machine over the in-memory backend under MockClock.

Random interleavings of enqueue, claim, success, failure (retryable or not),
lease renewal, worker crash (the worker vanishes without acking), the passing
of time (lease expiry, due retries), revoke (with or without terminate) and
dead-letter replay. Outcomes are decided by the runtime's own code
(``stem.actors._outcomes``) and written by the real ``BrokerActor`` (result stored
before the message is settled), so the machine checks the platform, not a
copy of it.

Invariants after every step:

* every task is in exactly one place: queued, delayed, leased (running) or
  dead-lettered, or nowhere with a terminal result (nothing vanishes, no
  second copy);
* a terminal result is written once and never changes (until a person
  replays the dead letter);
* attempts <= max_retries + 1;
* no task is delivered to a worker while another live lease on it holds.

The machine runs inside one ``trio.run`` per example (a thread driven
through ``trio.from_thread``), with a ``MockClock`` moved only by the
``advance`` rule. Run counts (examples, steps, rule use) are printed at the
end of the test and recorded as test properties.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from stem import Envelope, RetryPolicy, TaskOptions, TaskResult, TaskState
from stem._clock import now
from stem.actors import _outcomes
from stem.actors._broker import BrokerActor, Finish, Publish
from stem.adapters.memory import MemoryBackend
from stem.adapters.memory._broker import _DELAYED, _READY
from stem.contracts import Delivery, Revocation

T = TypeVar("T")

QUEUE = "default"
LEASE = 10.0
WORKERS = ("w0", "w1", "w2")
POLICY = RetryPolicy(base=1.0, cap=4.0, dont_retry_on=(KeyError,))
OPTIONS = TaskOptions(retry_policy=POLICY, result_ttl=None)

#: Filled while the test runs; printed and recorded at its end.
STATS: Counter[str] = Counter()


class Portal:
    """A ``trio.run`` (with a MockClock) in a thread, driven synchronously."""

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        trio.run(self._serve, clock=self.clock)

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._ready.set()
        await self._stop.wait()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def close(self) -> None:
        assert self._stop is not None
        self.run_sync(self._stop.set)
        self._thread.join()


@attrs.define
class Held:
    """A delivery a live worker believes it holds."""

    delivery: Delivery
    worker: str


@attrs.define
class Model:
    max_retries: int
    terminal: TaskResult | None = None


class PlatformMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.portal = Portal()
        self.backend = MemoryBackend()
        self.actor = BrokerActor(self.backend)
        self.tasks: dict[str, Model] = {}
        self.held: dict[str, Held] = {}  # receipt -> held delivery
        #: task id -> (receipt, lease_until) of the last lease granted
        self.leases: dict[str, tuple[str, float]] = {}
        self.counter = 0
        STATS["examples"] += 1

    def teardown(self) -> None:
        self.portal.close()

    # -- helpers --------------------------------------------------------------

    def now(self) -> float:
        return self.portal.run_sync(now)

    def settle(self, finishes: list[Finish]) -> None:
        self.portal.run(self.actor.handle_batch, finishes)
        for fin in finishes:
            self.held.pop(fin.delivery.receipt, None)
            current = self.leases.get(fin.delivery.task_id)
            if current is not None and current[0] == fin.delivery.receipt:
                del self.leases[fin.delivery.task_id]

    def step(self, name: str) -> None:
        STATS["steps"] += 1
        STATS[f"rule:{name}"] += 1

    # -- rules ----------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        STATS["steps"] += 0

    @rule(max_retries=st.integers(0, 2), delay=st.sampled_from([0.0, 0.0, 5.0]))
    def enqueue(self, max_retries: int, delay: float) -> None:
        self.step("enqueue")
        self.counter += 1
        at = self.now()
        env = Envelope(
            id=f"t{self.counter}",
            name="task",
            max_retries=max_retries,
            enqueued_at=at,
            not_before=at + delay if delay else None,
        )
        queued = TaskResult(task_id=env.id, state=TaskState.QUEUED, name="task")
        self.portal.run(
            self.actor.handle_batch, [Publish(envelopes=(env,), results=(queued,))]
        )
        self.tasks[env.id] = Model(max_retries=max_retries)

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> None:
        self.step("claim")
        at = self.now()
        got = self.portal.run_sync(
            lambda: self.backend.broker.claim_nowait(
                [QUEUE], limit=limit, lease=LEASE, consumer=worker
            )
        )
        revoked = self.portal.run(
            self.backend.revocations.is_revoked, [d.task_id for d in got]
        )
        finishes: list[Finish] = []
        for delivery in got:
            env = delivery.envelope
            assert env is not None
            previous = self.leases.get(delivery.task_id)
            assert previous is None or previous[1] <= at, (
                f"{delivery.task_id} delivered while a lease holds until "
                f"{previous[1]} (now {at})"
            )
            model = self.tasks[env.id]
            assert env.attempt <= model.max_retries + 1
            self.leases[delivery.task_id] = (delivery.receipt, delivery.lease_until)
            self.held[delivery.receipt] = Held(delivery=delivery, worker=worker)
            STATS["deliveries"] += 1
            if env.id in revoked:
                finishes.append(_outcomes.revoked(delivery, "revoked", at=at, ttl=None))
        if finishes:
            self.settle(finishes)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        self.step("succeed")
        receipt = data.draw(st.sampled_from(sorted(self.held)))
        delivery = self.held[receipt].delivery
        value = f"value-of-{delivery.task_id}"
        self.settle([_outcomes.succeeded(delivery, value, at=self.now(), ttl=None)])

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        self.step("fail")
        receipt = data.draw(st.sampled_from(sorted(self.held)))
        delivery = self.held[receipt].delivery
        error: Exception = RuntimeError("boom") if retryable else KeyError("fatal")
        outcome = _outcomes.failed(delivery, error, OPTIONS, at=self.now())
        if outcome.kind == "retry":
            assert 0.0 <= outcome.delay <= POLICY.cap
        self.settle([outcome.finish])

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        """A live worker renews every lease it holds, in one batch."""
        self.step("renew")
        worker = data.draw(
            st.sampled_from(sorted({h.worker for h in self.held.values()}))
        )
        mine = [h.delivery for h in self.held.values() if h.worker == worker]
        at = self.now()
        flags = self.portal.run(self.backend.broker.extend, mine, LEASE)
        for delivery, ok in zip(mine, flags, strict=True):
            current = self.leases.get(delivery.task_id)
            if ok:
                assert current is not None and current[0] == delivery.receipt
                self.leases[delivery.task_id] = (delivery.receipt, at + LEASE)
            else:  # lost (expired, or claimed again): the worker lets go
                assert (
                    current is None
                    or current[0] != delivery.receipt
                    or current[1] <= at
                )
                self.held.pop(delivery.receipt, None)
                STATS["leases_lost"] += 1

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """A worker dies: its deliveries stay leased until they expire."""
        self.step("crash")
        worker = data.draw(
            st.sampled_from(sorted({h.worker for h in self.held.values()}))
        )
        for receipt in [r for r, h in self.held.items() if h.worker == worker]:
            del self.held[receipt]

    @rule(seconds=st.sampled_from([0.5, 3.0, 7.0, LEASE + 1.0]))
    def advance(self, seconds: float) -> None:
        self.step("advance")
        self.portal.run_sync(self.portal.clock.jump, seconds)

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data(), terminate=st.booleans())
    def revoke(self, data: st.DataObject, terminate: bool) -> None:
        """As ``client.revoke``: store the order, mark waiting tasks REVOKED;
        with terminate the worker running it stops and records REVOKED."""
        self.step("revoke")
        task_id = data.draw(st.sampled_from(sorted(self.tasks)))
        at = self.now()
        revocation = Revocation(
            task_id=task_id, terminate=terminate, expires_at=at + 1e6
        )
        self.portal.run(self.backend.revocations.revoke, revocation)
        current = self.portal.run(self.backend.results.get, task_id)
        if current is not None and current.state in (
            TaskState.QUEUED,
            TaskState.RETRYING,
        ):
            revoked = attrs.evolve(
                current, state=TaskState.REVOKED, meta={"reason": "revoked"}
            )
            self.portal.run(self.backend.results.set_state, [revoked])
        if terminate:
            running = [h for h in self.held.values() if h.delivery.task_id == task_id]
            self.settle(
                [
                    _outcomes.revoked(h.delivery, "revoked", at=at, ttl=None)
                    for h in running
                ]
            )

    def has_dead_letters(self) -> bool:
        q = self.backend.broker._queues.get(QUEUE)
        return q is not None and bool(q.dead)

    @precondition(lambda self: self.has_dead_letters())
    @rule(limit=st.integers(1, 3))
    def replay(self, limit: int) -> None:
        """As ``client.dead_letters(q).replay(limit=)``: fresh attempt 1."""
        self.step("replay")
        broker = self.backend.broker
        chosen = self.portal.run(
            lambda: broker.replay_dead(QUEUE, limit=limit, dry_run=True)
        )
        for task_id in chosen:
            self.portal.run(self.backend.results.forget, task_id)
            self.tasks[task_id].terminal = None  # a person chose to run it again
        replayed = self.portal.run(lambda: broker.replay_dead(QUEUE, limit=limit))
        assert replayed == chosen
        STATS["replayed"] += len(replayed)

    # -- invariants -----------------------------------------------------------

    def locations(self) -> Counter[str]:
        broker = self.backend.broker
        q = broker._queues.get(QUEUE)
        found: Counter[str] = Counter()
        if q is None:
            return found
        seen: set[int] = set()
        for entry in q.ready:
            msg = entry[3]
            if msg.state == _READY and id(msg) not in seen:
                seen.add(id(msg))
                found[msg.task_id] += 1
        for delayed in q.delayed:
            msg = delayed[2]
            if msg.state == _DELAYED and id(msg) not in seen:
                seen.add(id(msg))
                found[msg.task_id] += 1
        for msg in q.leases.values():
            if id(msg) not in seen:
                seen.add(id(msg))
                found[msg.task_id] += 1
        for entry in q.dead.values():  # keyed by entry id
            found[entry.task_id] += 1
        return found

    @invariant()
    def each_task_in_exactly_one_place(self) -> None:
        places = self.locations()
        results = self.portal.run(self.backend.results.get_many, sorted(self.tasks))
        for task_id, result in zip(sorted(self.tasks), results, strict=True):
            count = places.get(task_id, 0)
            assert count <= 1, f"{task_id} is in {count} places"
            if count == 0:
                assert result is not None and result.state.is_terminal, (
                    f"{task_id} vanished (result {result})"
                )
                STATS["settled"] += 0

    @invariant()
    def terminal_results_are_final(self) -> None:
        results = self.portal.run(self.backend.results.get_many, sorted(self.tasks))
        for task_id, result in zip(sorted(self.tasks), results, strict=True):
            model = self.tasks[task_id]
            if result is None:
                assert model.terminal is None, f"{task_id}'s result disappeared"
                continue
            assert result.attempt <= model.max_retries + 1
            if model.terminal is not None:
                assert result == model.terminal, (
                    f"{task_id}: terminal {model.terminal.state} became {result.state}"
                )
            elif result.state.is_terminal:
                model.terminal = result
                STATS[f"terminal:{result.state.value}"] += 1

    @invariant()
    def dead_letters_are_failed_tasks(self) -> None:
        q = self.backend.broker._queues.get(QUEUE)
        if q is None:
            return
        for entry in q.dead.values():  # keyed by entry id
            task_id = entry.task_id
            assert entry.attempts <= self.tasks[task_id].max_retries + 1
            result = self.portal.run(self.backend.results.get, task_id)
            assert result is not None and result.state is not TaskState.SUCCEEDED


def test_platform_state_machine(
    capsys: pytest.CaptureFixture[str], record_property: Callable[[str, Any], None]
) -> None:
    """Random interleavings keep every task in one place, results final,
    attempts bounded and leases exclusive (200 examples)."""
    STATS.clear()
    run_state_machine_as_test(
        PlatformMachine,
        settings=settings(
            max_examples=200,
            stateful_step_count=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    summary = (
        f"state machine: {STATS['examples']} examples, {STATS['steps']} steps, "
        f"{STATS['deliveries']} deliveries, {STATS['replayed']} replays; "
        + ", ".join(
            f"{k.split(':', 1)[1]}={v}"
            for k, v in sorted(STATS.items())
            if k.startswith(("rule:", "terminal:"))
        )
    )
    with capsys.disabled():
        print(f"\n{summary}")
    for key, value in STATS.items():
        record_property(key, value)
    assert STATS["examples"] >= 200
    assert STATS["rule:crash"] > 0 and STATS["rule:replay"] > 0
    assert STATS["terminal:succeeded"] > 0 and STATS["terminal:failed"] > 0
    assert STATS["terminal:revoked"] > 0
