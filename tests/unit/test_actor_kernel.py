"""The actor kernel: mailboxes, replies, tell/ask and the default actor loop."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
import trio
import trio.testing

from stem import actors
from stem.actors import (
    Actor,
    ActorRef,
    AskTimeout,
    Mailbox,
    MailboxFull,
    Reply,
    reply_errors,
)

# -- messages and actors used below ---------------------------------------------


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Get:
    reply: Reply[int]


@attrs.frozen
class Boom:
    reply: Reply[int]


@attrs.frozen
class Ignore:
    reply: Reply[int]


Msg = Add | Get | Boom | Ignore


@attrs.define
class Counter(Actor[Msg]):
    total: int = 0

    async def handle(self, msg: Msg) -> None:
        match msg:
            case Add(amount=amount):
                self.total += amount
            case Get(reply=reply):
                reply.send(self.total)
            case Boom():
                raise ValueError("boom")
            case Ignore():
                pass


@attrs.define
class Recorder(Actor[int]):
    batch_size: ClassVar[int] = 10
    batches: list[list[int]] = attrs.Factory(list)

    async def handle_batch(self, batch: list[int]) -> None:
        self.batches.append(list(batch))


async def start(
    nursery: trio.Nursery, actor: Actor[Msg], capacity: int = 10
) -> tuple[ActorRef[Msg], Mailbox[Msg]]:
    mailbox: Mailbox[Msg] = Mailbox(capacity, name="counter")
    ref: ActorRef[Msg] = await nursery.start(actor.run, mailbox)
    return ref, mailbox


# -- Reply ----------------------------------------------------------------------


async def test_reply_send_then_wait_returns_value() -> None:
    """A reply answered with send() hands that value to wait()."""
    reply: Reply[str] = Reply()
    reply.send("hi")
    assert reply.done
    assert await reply.wait() == "hi"


async def test_reply_fail_raises_in_waiter() -> None:
    """A reply failed with an exception raises it from wait()."""
    reply: Reply[str] = Reply()
    reply.fail(KeyError("k"))
    with pytest.raises(KeyError):
        await reply.wait()


def test_reply_second_answer_raises() -> None:
    """Answering a reply twice (send or fail) raises RuntimeError."""
    reply: Reply[int] = Reply()
    reply.send(1)
    with pytest.raises(RuntimeError):
        reply.send(2)
    with pytest.raises(RuntimeError):
        reply.fail(ValueError())


def test_reply_errors_fails_reply_and_reraises() -> None:
    """reply_errors fails the reply with the block's exception and re-raises it."""
    reply: Reply[int] = Reply()
    with pytest.raises(ValueError), reply_errors(reply):
        raise ValueError("bad")
    assert reply.done


# -- Mailbox --------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
def test_mailbox_rejects_bad_capacity(capacity: object) -> None:
    """A mailbox capacity below 1 (or not an int) is refused with ValueError."""
    with pytest.raises(ValueError, match="capacity must be an int >= 1"):
        Mailbox(capacity)  # type: ignore[arg-type]


async def test_mailbox_put_blocks_when_full_and_put_nowait_raises() -> None:
    """A full mailbox blocks put() until a get() frees room; put_nowait raises."""
    mailbox: Mailbox[int] = Mailbox(2)
    await mailbox.put(1)
    mailbox.put_nowait(2)
    with pytest.raises(MailboxFull):
        mailbox.put_nowait(3)
    assert issubclass(MailboxFull, trio.WouldBlock)
    done = trio.Event()

    async def blocked_put() -> None:
        await mailbox.put(3)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_put)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        assert mailbox.statistics().tasks_waiting_put == 1
        assert await mailbox.get() == 1
        await done.wait()
    assert [mailbox.get_nowait(), mailbox.get_nowait()] == [2, 3]


async def test_get_batch_drains_many_messages_in_one_call() -> None:
    """get_batch returns every queued message up to max_items in one call."""
    mailbox: Mailbox[int] = Mailbox(100)
    for i in range(10):
        mailbox.put_nowait(i)
    assert await mailbox.get_batch(4) == [0, 1, 2, 3]
    assert await mailbox.get_batch(100) == [4, 5, 6, 7, 8, 9]
    assert mailbox.statistics().size == 0


async def test_get_batch_waits_for_the_first_message() -> None:
    """get_batch blocks on an empty mailbox until a message arrives."""
    mailbox: Mailbox[int] = Mailbox(5)
    got: list[list[int]] = []

    async def reader() -> None:
        got.append(await mailbox.get_batch(10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await mailbox.put(7)
    assert got == [[7]]


async def test_mailbox_statistics_count_traffic() -> None:
    """statistics() reports capacity, size and the put/got totals."""
    mailbox: Mailbox[int] = Mailbox(8, name="m")
    for i in range(5):
        await mailbox.put(i)
    await mailbox.get()
    await mailbox.get_batch(2)
    stats = mailbox.statistics()
    assert (stats.name, stats.capacity, stats.size) == ("m", 8, 2)
    assert (stats.total_put, stats.total_got, stats.closed) == (5, 3, False)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.size = 0  # type: ignore[misc]


async def test_closed_mailbox_refuses_puts_and_drains_then_ends() -> None:
    """After close() puts fail; gets drain what is queued, then see EndOfChannel."""
    mailbox: Mailbox[int] = Mailbox(4)
    await mailbox.put(1)
    mailbox.close()
    with pytest.raises(trio.ClosedResourceError):
        await mailbox.put(2)
    assert await mailbox.get() == 1
    with pytest.raises(trio.EndOfChannel):
        await mailbox.get_batch(3)
    assert mailbox.statistics().closed


# -- tell / ask -----------------------------------------------------------------


async def test_tell_then_ask_round_trip() -> None:
    """Messages told to an actor are handled before a later ask is answered."""
    async with trio.open_nursery() as nursery:
        ref, _ = await start(nursery, Counter())
        await ref.tell(Add(2))
        ref.tell_nowait(Add(3))
        assert await ref.ask(Get) == 5
        assert ref.name == "counter"
        nursery.cancel_scope.cancel()


async def test_ask_timeout_raises_ask_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An ask nobody answers raises AskTimeout after the timeout (a TimeoutError)."""
    async with trio.open_nursery() as nursery:
        ref, _ = await start(nursery, Counter())
        before = trio.current_time()
        with pytest.raises(AskTimeout, match="counter") as info:
            await ref.ask(Ignore, timeout=2.5)
        assert trio.current_time() - before == pytest.approx(2.5)
        assert isinstance(info.value, TimeoutError)
        nursery.cancel_scope.cancel()


async def test_actor_exception_reaches_the_asker_and_crashes_the_actor() -> None:
    """handle() raising fails the message's Reply and still crashes the actor."""
    mailbox: Mailbox[Msg] = Mailbox(4, name="counter")
    crashes: list[BaseException] = []

    async def watched() -> None:
        try:
            await Counter().run(mailbox)
        except ValueError as exc:
            crashes.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watched)
        with pytest.raises(ValueError, match="boom"):
            await ActorRef(mailbox).ask(Boom)
    assert [str(e) for e in crashes] == ["boom"]


async def test_batch_remainder_is_requeued_after_a_crash() -> None:
    """Messages taken in the same batch after the failing one go back to the inbox."""
    mailbox: Mailbox[Msg] = Mailbox(10, name="counter")
    boom = Boom(Reply())
    for msg in (Add(1), boom, Add(10), Add(100)):
        mailbox.put_nowait(msg)
    first = Counter()
    with pytest.RaisesGroup(ValueError):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run, mailbox)
    assert first.total == 1
    with pytest.raises(ValueError):
        await boom.reply.wait()
    assert await mailbox.get_batch(10) == [Add(10), Add(100)]


async def test_default_run_batches_and_counts_statistics() -> None:
    """The default loop hands queued messages over in batches and counts them."""
    mailbox: Mailbox[int] = Mailbox(50, name="rec")
    for i in range(25):
        mailbox.put_nowait(i)
    recorder = Recorder()
    mailbox.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run, mailbox)
    assert recorder.batches == [
        list(range(10)),
        list(range(10, 20)),
        [20, 21, 22, 23, 24],
    ]
    stats = recorder.statistics()
    assert (stats.name, stats.messages_handled, stats.batches) == ("rec", 25, 3)
    assert stats.mailbox is not None
    assert stats.mailbox.total_got == 25


async def test_hooks_run_around_the_loop_and_started_waits_for_on_start() -> None:
    """on_start runs before the ref is handed out and on_stop runs on cancellation."""
    calls: list[str] = []

    @attrs.define
    class Hooked(Actor[int]):
        async def on_start(self) -> None:
            await trio.sleep(0)
            calls.append("start")

        async def on_stop(self) -> None:
            await trio.sleep(0)
            calls.append("stop")

        async def handle(self, msg: int) -> None:
            calls.append(f"msg {msg}")

    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Hooked().run, Mailbox[int](4, name="h"))
        assert calls == ["start"]
        await ref.tell(1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert calls == ["start", "msg 1", "stop"]


async def test_failure_in_on_start_is_raised_from_start() -> None:
    """An actor whose on_start raises fails nursery.start with that error."""

    @attrs.define
    class Broken(Actor[int]):
        async def on_start(self) -> None:
            raise OSError("no db")

    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError, match="no db"):
            await nursery.start(Broken().run, Mailbox[int](1))


def test_public_names_are_exported_once() -> None:
    """Every public name of the package is exported by actors/__init__ exactly once."""
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(actors.__file__).read_text())
    names = [
        alias.asname
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert len(names) == len(set(names))
    assert {"Actor", "ActorRef", "Mailbox", "Supervisor", "open_supervisor"} <= set(
        names
    )
    for name in names:
        assert getattr(actors, name).__module__.startswith("stem.actors.")
