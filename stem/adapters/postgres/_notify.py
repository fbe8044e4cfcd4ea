"""LISTEN/NOTIFY: one dedicated connection and the Trio side of wakeups.

asyncpg calls the listener callbacks on the asyncio side; they only
``send_nowait`` into a bounded Trio memory channel and never raise. When the
channel is full they set a flag meaning "something happened": the dispatcher
then wakes every waiter, which re-reads the database (nothing is lost, since
the database, not the notification, is the source of truth; a broadcast that
overflowed is dropped and counted).

Channels (one per schema): ``<schema>.jobs`` carries queue names (one NOTIFY
per publish batch, names joined by newlines), ``<schema>.results`` carries
finished task ids, ``<schema>.control`` carries broadcast JSON objects. A
consumer whose claim waits also LISTENs on its own handoff channel (see
``PostgresBroker.claim``), which carries the messages leased to it by the
publish that inserted them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from stem._codec import decode_object
from stem._errors import DecodeError

from ._config import PostgresConfig
from ._db import CONNECTION_ERRORS, Db, unavailable

logger = logging.getLogger("stem.postgres")

_LOST = "\x00lost"


@attrs.define(eq=False)
class Hub:
    """Waiters for queues and results, subscribers of broadcasts."""

    config: PostgresConfig
    db: Db
    buffer: int = 1024
    _send: trio.MemorySendChannel[tuple[str, str]] = attrs.field(init=False)
    _recv: trio.MemoryReceiveChannel[tuple[str, str]] = attrs.field(init=False)
    _overflow: bool = False
    _lost: trio.Event = attrs.field(factory=trio.Event)
    _jobs: dict[str, set[trio.Event]] = attrs.field(factory=dict)
    _results: dict[str, set[trio.Event]] = attrs.field(factory=dict)
    _subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = attrs.field(factory=set)
    dropped_broadcasts: int = 0
    reconnects: int = 0
    #: handoff channel -> what takes its payloads (``PostgresBroker._received``)
    handoffs: dict[str, Callable[[str], None]] = attrs.field(factory=dict)
    #: the backend pid of the live LISTEN connection (None while it is down)
    pid: int | None = None
    #: the channels LISTENed on the live connection besides the three fixed
    listening: set[str] = attrs.field(factory=set)
    _conn: Any = None
    #: one operation at a time on the listener connection (keepalive, LISTEN)
    _conn_lock: trio.Lock = attrs.field(factory=trio.Lock)

    def __attrs_post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[tuple[str, str]](self.buffer)

    # ------------------------------------------------------------ callbacks
    # Called by asyncpg on the asyncio side: send_nowait only, never raise.

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            self._send.send_nowait((channel, payload))
        except Exception:
            self._overflow = True

    def _on_terminate(self, _conn: Any) -> None:
        try:
            self._send.send_nowait((_LOST, ""))
        except Exception:
            self._overflow = True
            self._lost_flag = True

    _lost_flag: bool = False

    # --------------------------------------------------------------- waiters

    @contextmanager
    def watch_queues(self, queues: Iterable[str]) -> Iterator[trio.Event]:
        """An event set when a publish to any of ``queues`` is announced."""
        event = trio.Event()
        names = list(queues)
        for name in names:
            self._jobs.setdefault(name, set()).add(event)
        try:
            yield event
        finally:
            for name in names:
                waiters = self._jobs.get(name)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._jobs[name]

    @contextmanager
    def watch_result(self, task_id: str) -> Iterator[trio.Event]:
        """An event set when a terminal result for ``task_id`` is announced."""
        event = trio.Event()
        self._results.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._results.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._results[task_id]

    def wake_queues(self, queues: Iterable[str]) -> None:
        for name in queues:
            for event in self._jobs.get(name, ()):
                event.set()

    def wake_results(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            for event in self._results.get(task_id, ()):
                event.set()

    def wake_all(self) -> None:
        for waiters in (*self._jobs.values(), *self._results.values()):
            for event in waiters:
                event.set()

    @contextmanager
    def subscription(
        self, size: int = 256
    ) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, recv = trio.open_memory_channel[dict[str, Any]](size)
        self._subscribers.add(send)
        try:
            yield recv
        finally:
            self._subscribers.discard(send)
            send.close()
            recv.close()

    # ------------------------------------------------------------ dispatching

    async def listen(self, channel: str) -> None:
        """LISTEN on ``channel`` too (and again after every reconnect).
        Best effort: ``channel`` is in :attr:`listening` once it holds.
        The caller has put its handler in :attr:`handoffs` first (the
        listener LISTENs on every channel there after a reconnect)."""
        conn = self._conn
        if conn is None or channel in self.listening:
            return
        async with self._conn_lock:
            if conn is not self._conn:
                return  # reconnected meanwhile: the new connection listens
            try:
                await self.db.aio(conn.add_listener)(channel, self._on_notify)
            except CONNECTION_ERRORS:
                return  # the listener reconnects and listens again
            self.listening.add(channel)

    def _dispatch(self, channel: str, payload: str) -> None:
        take = self.handoffs.get(channel)
        if take is not None:
            take(payload)
        elif channel == self._chan_jobs:
            self.wake_queues(payload.split("\n"))
        elif channel == self._chan_results:
            self.wake_results(payload.split("\n"))
        elif channel == self._chan_control:
            try:
                message = decode_object(payload, what="broadcast")
            except DecodeError as exc:
                logger.warning("dropped a broadcast that does not decode: %s", exc)
                return
            for send in list(self._subscribers):
                try:
                    send.send_nowait(dict(message))
                except trio.WouldBlock:
                    self.dropped_broadcasts += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.discard(send)
        elif channel == _LOST:
            self._lost.set()

    @property
    def _chan_jobs(self) -> str:
        return self.config.channel("jobs")

    @property
    def _chan_results(self) -> str:
        return self.config.channel("results")

    @property
    def _chan_control(self) -> str:
        return self.config.channel("control")

    async def run_dispatcher(self) -> None:
        async for channel, payload in self._recv:
            self._dispatch(channel, payload)
            if self._overflow:
                self._overflow = False
                if self._lost_flag:
                    self._lost_flag = False
                    self._lost.set()
                self.wake_all()

    # -------------------------------------------------------------- listener

    async def run_listener(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one LISTEN connection open, reconnecting after failures.

        The first connection failure before ``started`` is raised (as
        BrokerUnavailable); later ones are retried with backoff. After every
        reconnect all waiters are woken to re-read what they may have missed.
        """
        started = False
        delay = 0.05
        channels = (self._chan_jobs, self._chan_results, self._chan_control)
        while True:
            conn: Any = None
            try:
                conn = await self.db.connect()
                conn.add_termination_listener(self._on_terminate)
                for channel in (*channels, *self.handoffs):
                    await self.db.aio(conn.add_listener)(channel, self._on_notify)
                self.listening = set(self.handoffs)
                self.pid = conn.get_server_pid()
                self._conn = conn
                self._lost = trio.Event()
                if started:
                    self.reconnects += 1
                    self.wake_all()
                else:
                    started = True
                    task_status.started()
                delay = 0.05
                await self._keepalive(conn)
            except CONNECTION_ERRORS as exc:
                if not started:
                    raise unavailable(self.config, exc) from exc
            finally:
                self._conn, self.pid, self.listening = None, None, set()
                if conn is not None:
                    await self._close(conn)
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _keepalive(self, conn: Any) -> None:
        # Returns when the connection is lost; a cheap query every poll
        # interval notices a dead socket asyncpg has not noticed yet.
        ping = self.db.aio(conn.fetchval)
        while True:
            with trio.move_on_after(self.config.poll_interval):
                await self._lost.wait()
            if self._lost.is_set() or conn.is_closed():
                return
            with trio.move_on_after(max(5.0, self.config.poll_interval)) as scope:
                async with self._conn_lock:
                    await ping("SELECT 1")
            if scope.cancelled_caught:
                return

    async def _close(self, conn: Any) -> None:
        with trio.CancelScope(shield=True):
            try:
                with trio.move_on_after(2):
                    await self.db.aio(conn.close)(timeout=2)
                    return
            except Exception:
                pass
            try:
                conn.terminate()
            except Exception:
                pass

    def close(self) -> None:
        self._send.close()
        for send in list(self._subscribers):
            send.close()
