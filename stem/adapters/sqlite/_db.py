"""The one connection per backend and the thread that drives it.

Every statement runs in a worker thread through ``trio.to_thread.run_sync``
with a ``CapacityLimiter(1)``: one caller at a time owns the connection, and a
whole batch (claim N, ack N, set_state N) is one thread hop and one
transaction. Writes start with ``BEGIN IMMEDIATE`` so that claims are atomic
across processes sharing the file; the busy timeout makes a second writer
wait instead of failing.

Cancellation: a call that is cancelled while waiting for the connection does
nothing; once its statements run they finish and commit (the thread is not
abandoned), so every call is atomic with respect to cancellation.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import trio

from stem._errors import BrokerUnavailable

from ._config import SQLiteConfig
from ._schema import migrate
from ._wake import Wake

T = TypeVar("T")

#: Errors that mean the database is there but cannot be used right now.
_PROGRAMMING = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
)


class Database:
    """Owns the connection; ``write``/``read`` run a function on it in a thread."""

    def __init__(self, config: SQLiteConfig, url: str) -> None:
        self.config = config
        self.url = url
        self._conn: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)
        #: wakes the other processes on this file (none for ``:memory:``)
        self.wake = Wake(config.path)

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        await self._hop(self._open_sync)
        if not self.config.in_memory:
            self.wake.open()

    def notify(self, kinds: bytes) -> None:
        """Wake the other processes on this file: ``kinds`` (see
        :data:`stem.adapters.sqlite._wake.KINDS`) changed in a committed write."""
        self.wake.notify(kinds)

    def _open_sync(self) -> None:
        cfg = self.config
        conn = sqlite3.connect(
            cfg.path,
            timeout=cfg.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(cfg.busy_timeout * 1000)}")
            if not cfg.in_memory:
                self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {cfg.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. Runs in the worker thread. The switch takes a brief
        exclusive lock and SQLite reports "locked" at once (ignoring the busy
        timeout) when another process is creating the file at that moment, so
        retry with a short backoff up to the busy timeout."""
        deadline = time.monotonic() + self.config.busy_timeout
        pause = 0.005
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() != "wal":
                    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
                continue
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(
                    f"cannot switch {self.config.path} to WAL mode (got {mode!r}); "
                    "is it on a network file system?"
                )
            return

    async def aclose(self) -> None:
        self.wake.close()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._close_sync, limiter=self._limiter)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # ------------------------------------------------------------ running

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside ``BEGIN IMMEDIATE ... COMMIT`` (one hop)."""
        return await self._hop(self._transaction, fn, "BEGIN IMMEDIATE")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside a read transaction (one consistent snapshot)."""
        return await self._hop(self._transaction, fn, "BEGIN")

    async def write_if_changed(
        self, seen: int | None, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[int, T | None]:
        """Like :meth:`write`, but skipped (returning None) when no other
        connection has committed since ``PRAGMA data_version`` read ``seen``.

        Returns the data version read before running. A poll for work from
        another process is then one cheap read, not a write lock.
        """
        return await self._hop(self._if_changed, seen, fn, "BEGIN IMMEDIATE")

    async def read_if_changed(
        self, seen: int | None, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[int, T | None]:
        """:meth:`read` skipped when nothing changed since ``seen``."""
        return await self._hop(self._if_changed, seen, fn, "BEGIN")

    def _if_changed(
        self, seen: int | None, fn: Callable[[sqlite3.Connection], T], begin: str
    ) -> tuple[int, T | None]:
        conn = self._conn
        if conn is None:
            raise BrokerUnavailable(f"the sqlite backend {self.url} is closed")
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        if seen is not None and version == seen:
            return version, None
        return version, self._transaction(fn, begin)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        conn = self._conn
        if conn is None:
            raise BrokerUnavailable(f"the sqlite backend {self.url} is closed")
        conn.execute(begin)
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _hop(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except _PROGRAMMING:
            raise
        except sqlite3.Error as exc:
            raise BrokerUnavailable(
                f"sqlite backend {self.url} failed: {exc} ({type(exc).__name__})"
            ) from exc


class Signal:
    """An in-process wake-up. Take ``snapshot()`` *before* looking at the data,
    then ``wait(snapshot, timeout)``: a ``fire()`` in between is not missed."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    def snapshot(self) -> trio.Event:
        return self._event

    @staticmethod
    async def wait(snapshot: trio.Event, timeout: float) -> None:
        """Return when fired since ``snapshot`` or after ``timeout`` seconds."""
        with trio.move_on_after(max(timeout, 0.0)):
            await snapshot.wait()
