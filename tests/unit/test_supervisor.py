"""Supervisors: restart strategies, intensity, backoff, events and cancellation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from stem.actors import (
    Actor,
    ActorRef,
    ChildSpec,
    Mailbox,
    Reply,
    StartChild,
    StopChild,
    Supervisor,
    SupervisorEscalation,
    SupervisorEvent,
    open_supervisor,
)

# -- a test actor ---------------------------------------------------------------


@attrs.frozen
class Crash:
    pass


@attrs.frozen
class Finish:
    pass


@attrs.frozen
class Note:
    text: str


@attrs.frozen
class Query:
    reply: Reply[tuple[int, list[str]]]


Msg = Crash | Finish | Note | Query


class _Finished(Exception):
    pass


@attrs.define
class Worker(Actor[Msg]):
    """Records its starts and notes; crashes on Crash, returns on Finish."""

    name: str
    incarnation: int
    log: list[tuple[str, str, float]]
    fail_on: frozenset[int] = frozenset()
    notes: list[str] = attrs.Factory(list)

    async def on_start(self) -> None:
        self.log.append(("start", self.name, trio.current_time()))
        if self.incarnation in self.fail_on:
            raise OSError(f"{self.name} cannot start")

    async def on_stop(self) -> None:
        self.log.append(("stop", self.name, trio.current_time()))

    async def handle(self, msg: Msg) -> None:
        match msg:
            case Crash():
                raise ValueError(f"{self.name} crashed")
            case Finish():
                raise _Finished
            case Note(text=text):
                self.notes.append(text)
            case Query(reply=reply):
                reply.send((self.incarnation, list(self.notes)))

    async def run(
        self,
        mailbox: Mailbox[Msg],
        *,
        task_status: trio.TaskStatus[ActorRef[Msg]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await super().run(mailbox, task_status=task_status)
        except _Finished:
            return


def worker_spec(
    name: str,
    log: list[tuple[str, str, float]],
    fail_on: frozenset[int] = frozenset(),
    **kwargs: Any,
) -> ChildSpec[Msg]:
    counter = iter(range(1_000))

    def factory() -> Worker:
        return Worker(name=name, incarnation=next(counter), log=log, fail_on=fail_on)

    return ChildSpec(name, factory, **kwargs)


def starts(log: list[tuple[str, str, float]]) -> list[str]:
    return [name for kind, name, _ in log if kind == "start"]


async def incarnation(ref: ActorRef[Msg]) -> int:
    """Ask the child which incarnation answers (waits through a restart)."""
    number, _ = await ref.ask(Query)
    return number


def recorder() -> tuple[list[SupervisorEvent], Callable[[SupervisorEvent], None]]:
    events: list[SupervisorEvent] = []
    return events, events.append


# -- strategies -----------------------------------------------------------------


async def test_one_for_one_restarts_only_the_crashed_child(
    autojump_clock: MockClock,
) -> None:
    """With one_for_one, a crash restarts that child and leaves its sibling alone."""
    log: list[tuple[str, str, float]] = []
    async with open_supervisor(strategy="one_for_one") as sup:
        a = await sup.start_child(worker_spec("a", log))
        b = await sup.start_child(worker_spec("b", log))
        await a.tell(Crash())
        assert await incarnation(a) == 1
        assert await incarnation(b) == 0
    assert starts(log) == ["a", "b", "a"]


async def test_one_for_all_restarts_every_child_in_order(
    autojump_clock: MockClock,
) -> None:
    """With one_for_all, one crash restarts all children in spec order."""
    log: list[tuple[str, str, float]] = []
    async with open_supervisor(strategy="one_for_all") as sup:
        a = await sup.start_child(worker_spec("a", log))
        b = await sup.start_child(worker_spec("b", log))
        await b.tell(Crash())
        assert await incarnation(b) == 1
        assert await incarnation(a) == 1
    assert starts(log) == ["a", "b", "a", "b"]
    assert [kind for kind, name, _ in log if name == "a"][:2] == ["start", "stop"]


async def test_one_for_all_keeps_each_childs_mailbox(autojump_clock: MockClock) -> None:
    """Messages queued for a sibling during a one_for_all restart reach its heir."""
    log: list[tuple[str, str, float]] = []
    crashed = trio.Event()

    def on_event(event: SupervisorEvent) -> None:
        if event.kind == "crashed":
            crashed.set()

    async with open_supervisor(
        strategy="one_for_all", backoff_initial=1.0, on_event=on_event
    ) as sup:
        a = await sup.start_child(worker_spec("a", log))
        b = await sup.start_child(worker_spec("b", log))
        await a.tell(Crash())
        await crashed.wait()
        await b.tell(Note("kept"))
        assert await b.ask(Query) == (1, ["kept"])


async def test_inbox_survives_restart(autojump_clock: MockClock) -> None:
    """Messages sent while a child is down are handled by its next incarnation."""
    log: list[tuple[str, str, float]] = []
    crashed = trio.Event()

    def on_event(event: SupervisorEvent) -> None:
        if event.kind == "crashed":
            crashed.set()

    async with open_supervisor(backoff_initial=2.0, on_event=on_event) as sup:
        ref = await sup.start_child(worker_spec("a", log))
        await ref.tell(Note("before"))
        await ref.tell(Crash())
        await crashed.wait()
        assert sup.statistics().children[0].state == "restarting"
        for text in ("x", "y", "z"):
            ref.tell_nowait(Note(text))
        assert await ref.ask(Query) == (1, ["x", "y", "z"])


# -- intensity and backoff ------------------------------------------------------


async def test_exceeding_restart_intensity_escalates(autojump_clock: MockClock) -> None:
    """A third crash within the period under max_restarts=2 raises an escalation."""
    log: list[tuple[str, str, float]] = []
    events, on_event = recorder()

    async def crash_three_times() -> None:
        async with open_supervisor(
            name="root", max_restarts=2, period=60.0, on_event=on_event
        ) as sup:
            ref = await sup.start_child(worker_spec("flaky", log))
            for expected in (1, 2):
                await ref.tell(Crash())
                assert await incarnation(ref) == expected
            await ref.tell(Crash())
            await trio.sleep_forever()

    with pytest.raises(SupervisorEscalation) as info:
        await crash_three_times()
    message = str(info.value)
    assert "'flaky'" in message
    assert "2 restarts within 60.0 s" in message
    assert "flaky crashed" in message
    assert isinstance(info.value.__cause__, ValueError)
    assert (info.value.child, info.value.restarts) == ("flaky", 2)
    assert events[-2].kind == "escalated"
    assert starts(log) == ["flaky"] * 3


async def test_restarts_outside_the_period_do_not_escalate(
    autojump_clock: MockClock,
) -> None:
    """Crashes spaced wider than the period never exhaust the restart budget."""
    log: list[tuple[str, str, float]] = []
    async with open_supervisor(max_restarts=1, period=1.0) as sup:
        ref = await sup.start_child(worker_spec("a", log))
        for expected in (1, 2, 3):
            await ref.tell(Crash())
            assert await incarnation(ref) == expected
            await trio.sleep(2.0)
        assert sup.statistics().total_restarts == 3


async def test_backoff_doubles_between_restarts_up_to_the_cap(
    autojump_clock: MockClock,
) -> None:
    """Successive restarts of a child wait 0.1, 0.2, 0.4 then the 0.5 s cap."""
    log: list[tuple[str, str, float]] = []
    async with open_supervisor(
        max_restarts=10, period=100.0, backoff_initial=0.1, backoff_max=0.5
    ) as sup:
        ref = await sup.start_child(worker_spec("a", log))
        for expected in (1, 2, 3, 4):
            await ref.tell(Crash())
            assert await incarnation(ref) == expected
    times = [t for kind, _, t in log if kind == "start"]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.5])


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all"])
async def test_failure_while_restarting_counts_as_another_crash(
    autojump_clock: MockClock, strategy: str
) -> None:
    """A child failing before started() during a restart is restarted again."""
    log: list[tuple[str, str, float]] = []
    events, on_event = recorder()
    async with open_supervisor(strategy=strategy, on_event=on_event) as sup:
        await sup.start_child(worker_spec("a", log))
        b = await sup.start_child(worker_spec("b", log, fail_on=frozenset({1})))
        await b.tell(Crash())
        assert await incarnation(b) == 2
        assert sup.statistics().total_restarts == 2
    crashed = [e for e in events if e.kind == "crashed"]
    assert [(e.child, type(e.error)) for e in crashed] == [
        ("b", ValueError),
        ("b", OSError),
    ]
    if strategy == "one_for_one":
        assert starts(log) == ["a", "b", "b", "b"]
    else:
        assert starts(log) == ["a", "b", "a", "b", "a", "b"]


# -- starting, stopping, cancelling ----------------------------------------------


async def test_failure_before_started_fails_fast_from_start_child() -> None:
    """A child raising before started() makes start_child raise it, with no retry."""
    calls: list[int] = []

    @attrs.define
    class Broken(Actor[int]):
        async def on_start(self) -> None:
            raise OSError("cannot connect")

    def factory() -> Broken:
        calls.append(1)
        return Broken()

    events, on_event = recorder()
    async with open_supervisor(on_event=on_event) as sup:
        with pytest.raises(OSError, match="cannot connect"):
            await sup.start_child(ChildSpec("broken", factory))
        assert calls == [1]
        assert sup.statistics().children == ()
        assert sup.statistics().total_restarts == 0
        ok = await sup.start_child(worker_spec("ok", []))
        assert await incarnation(ok) == 0
    assert [e.kind for e in events][:1] == ["crashed"]


async def test_cancelling_the_supervisor_cancels_children_quietly() -> None:
    """Cancelling a supervisor stops its children, reports no crash, and propagates."""
    log: list[tuple[str, str, float]] = []
    events, on_event = recorder()
    reached_after_block = False
    with trio.CancelScope() as scope:
        async with open_supervisor(on_event=on_event) as sup:
            await sup.start_child(worker_spec("a", log))
            await sup.start_child(worker_spec("b", log))
            scope.cancel()
            await trio.sleep_forever()
        reached_after_block = True
    assert scope.cancelled_caught
    assert not reached_after_block
    assert sorted(name for kind, name, _ in log if kind == "stop") == ["a", "b"]
    assert [e.kind for e in events] == ["started", "started", "stopped", "stopped"]


async def test_supervisor_run_reraises_cancelled() -> None:
    """Supervisor.run lets trio.Cancelled out when its nursery is cancelled."""
    seen: list[type[BaseException]] = []
    sup = Supervisor(name="inner", children=[worker_spec("a", [])])

    async def watched(task_status: trio.TaskStatus[Any]) -> None:
        try:
            await sup.run(Mailbox(4, name="inner"), task_status=task_status)
        except trio.Cancelled:
            seen.append(trio.Cancelled)
            raise

    async with trio.open_nursery() as nursery:
        await nursery.start(watched)
        assert sup.statistics().running
        nursery.cancel_scope.cancel()
    assert seen == [trio.Cancelled]
    assert not sup.statistics().running


async def test_stop_child_cancels_it_and_closes_its_mailbox() -> None:
    """stop_child ends the child (running on_stop), forgets it and closes its inbox."""
    log: list[tuple[str, str, float]] = []
    async with open_supervisor() as sup:
        ref = await sup.start_child(worker_spec("a", log))
        await sup.stop_child("a")
        assert [kind for kind, _, _ in log] == ["start", "stop"]
        assert sup.statistics().children == ()
        with pytest.raises(trio.ClosedResourceError):
            await ref.tell(Note("late"))
        with pytest.raises(KeyError):
            await sup.stop_child("a")


async def test_duplicate_child_name_is_refused() -> None:
    """Starting a second child under a name in use raises ValueError."""
    async with open_supervisor() as sup:
        await sup.start_child(worker_spec("a", []))
        with pytest.raises(ValueError, match="already has a child 'a'"):
            await sup.start_child(worker_spec("a", []))


# -- restart policies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "ending", "restarted"),
    [
        ("permanent", Finish(), True),
        ("permanent", Crash(), True),
        ("transient", Finish(), False),
        ("transient", Crash(), True),
        ("temporary", Finish(), False),
        ("temporary", Crash(), False),
    ],
)
async def test_restart_policies(
    autojump_clock: MockClock, restart: str, ending: Msg, restarted: bool
) -> None:
    """permanent always restarts, transient only after a crash, temporary never."""
    log: list[tuple[str, str, float]] = []
    events, on_event = recorder()
    async with open_supervisor(on_event=on_event) as sup:
        ref = await sup.start_child(worker_spec("a", log, restart=restart))
        await ref.tell(ending)
        await trio.sleep(1.0)
        assert len(sup.statistics().children) == (1 if restarted else 0)
    assert starts(log) == (["a", "a"] if restarted else ["a"])
    if not restarted:
        with pytest.raises(trio.ClosedResourceError):
            ref.tell_nowait(Note("to nobody"))
    kinds = [e.kind for e in events]
    assert ("restarted" in kinds) is restarted
    assert ("crashed" in kinds) is isinstance(ending, Crash)


# -- events and statistics ------------------------------------------------------


async def test_on_event_sees_started_crashed_restarted(
    autojump_clock: MockClock,
) -> None:
    """on_event gets started, crashed (with the error) and restarted for a child."""
    events, on_event = recorder()
    async with open_supervisor(name="root", on_event=on_event) as sup:
        ref = await sup.start_child(worker_spec("a", []))
        await ref.tell(Crash())
        assert await incarnation(ref) == 1
    started, crashed, restarted = events[:3]
    assert (started.kind, started.supervisor, started.child) == ("started", "root", "a")
    assert crashed.kind == "crashed"
    assert isinstance(crashed.error, ValueError)
    assert (restarted.kind, restarted.restarts) == ("restarted", 1)


async def test_raising_on_event_does_not_break_supervision(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_event callback that raises is logged and the child is still restarted."""

    def on_event(event: SupervisorEvent) -> None:
        raise RuntimeError("event bus down")

    with caplog.at_level(logging.ERROR, logger="stem.actors.supervisor"):
        async with open_supervisor(on_event=on_event) as sup:
            ref = await sup.start_child(worker_spec("a", []))
            await ref.tell(Crash())
            assert await incarnation(ref) == 1
    assert any("on_event" in r.getMessage() for r in caplog.records)


async def test_statistics_report_restarts_and_traffic(
    autojump_clock: MockClock,
) -> None:
    """statistics() counts restarts per child and the actor's handled messages."""
    async with open_supervisor(name="root", strategy="one_for_all") as sup:
        ref = await sup.start_child(worker_spec("a", [], mailbox_capacity=7))
        await ref.tell(Crash())
        await ref.tell(Note("n"))
        assert await incarnation(ref) == 1
        stats = sup.statistics()
    assert (stats.name, stats.strategy, stats.running) == ("root", "one_for_all", True)
    assert (stats.total_restarts, stats.restarts_in_period) == (1, 1)
    (child,) = stats.children
    assert (child.name, child.state, child.restart, child.restarts) == (
        "a",
        "running",
        "permanent",
        1,
    )
    assert child.mailbox.capacity == 7
    assert child.mailbox.total_put == 3
    assert child.actor is not None
    assert (child.actor.restarts, child.actor.messages_handled) == (1, 2)


# -- trees ----------------------------------------------------------------------


async def test_supervisor_tree_escalation_restarts_the_subtree(
    autojump_clock: MockClock,
) -> None:
    """A sub-supervisor that escalates is restarted by its parent; its child's inbox
    (owned by the caller) survives."""
    log: list[tuple[str, str, float]] = []
    inbox: Mailbox[Msg] = Mailbox(10, name="w")
    events, on_event = recorder()

    w_spec = worker_spec("w", log, mailbox=inbox)

    def subtree() -> Supervisor:
        return Supervisor(name="workers", max_restarts=0, children=[w_spec])

    async with open_supervisor(name="root", on_event=on_event) as root:
        sub = await root.start_child(ChildSpec("workers", subtree))
        ref = ActorRef(inbox)
        await ref.tell(Crash())
        await ref.tell(Note("after"))
        assert await ref.ask(Query) == (1, ["after"])
        extra: ActorRef[Msg] = await sub.ask(
            lambda r: StartChild(worker_spec("x", log), r)
        )
        assert await incarnation(extra) == 0
        await sub.ask(lambda r: StopChild("x", r))
    crashes = [e for e in events if e.kind == "crashed"]
    assert [(e.child, type(e.error)) for e in crashes] == [
        ("workers", SupervisorEscalation)
    ]
    assert starts(log) == ["w", "w", "x"]


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ChildSpec("a", Worker, restart="sometimes"),
        lambda: ChildSpec("a", Worker, mailbox_capacity=0),
        lambda: ChildSpec("", Worker),
        lambda: Supervisor(strategy="rest_for_one"),
        lambda: Supervisor(max_restarts=-1),
        lambda: Supervisor(period=0),
        lambda: Supervisor(backoff_initial=2.0, backoff_max=1.0),
    ],
)
def test_bad_configuration_is_rejected(make: Callable[[], object]) -> None:
    """Unknown policies, empty names and impossible numbers raise ValueError."""
    with pytest.raises(ValueError):
        make()
