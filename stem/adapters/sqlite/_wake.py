"""Waking the other processes that share a database file, without polling.

Each open backend binds a Unix datagram socket in a directory beside the
database (``<file>-wake/<pid>-<random>``). After a write commits, the writer
sends one datagram naming what changed (``KINDS``) to every other socket in
that directory; the receiving backend fires its in-process signals, so a
claim, a ``wait`` or a broadcast subscriber in another process wakes within
a scheduler tick instead of at its next poll.

A wake carries no data: the woken side still reads the database, so a lost,
forged or malformed datagram costs at most one cheap ``PRAGMA data_version``
read, and a missed one is caught by the poll, which stays as the fallback.
A socket left behind by a killed process refuses datagrams; the first sender
to see that removes it. Where no socket can be bound (the path is longer than
a socket address allows, the directory is read-only, no ``AF_UNIX``), the
backend works as before, by polling alone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
from collections.abc import Callable

import trio

logger = logging.getLogger("stem.sqlite")

#: What changed, one byte each: queued messages, results, broadcasts,
#: workflow runs, schedule entries.
KINDS = frozenset(b"qrbws")
#: ``sockaddr_un.sun_path`` is 108 bytes on Linux (104 on the BSDs).
_MAX_PATH = 100
#: Re-list the directory at least this often (Trio seconds), in case a new
#: socket appeared within the directory's mtime resolution.
_RELIST = 1.0
_DATAGRAM = 64


def wake_dir(db_path: str) -> str:
    """The directory holding the wake sockets of ``db_path``'s users."""
    return f"{db_path}-wake"


class Wake:
    """One process's wake socket for one database file (see the module)."""

    def __init__(self, db_path: str) -> None:
        self.directory = wake_dir(db_path)
        self.path: str | None = None
        self._recv: socket.socket | None = None
        self._send: socket.socket | None = None
        self._peers: list[str] = []
        self._listed_at = -_RELIST
        self._listed_mtime = -1
        self.sent = 0
        self.received = 0

    @property
    def active(self) -> bool:
        return self._recv is not None

    def open(self) -> bool:
        """Bind this process's socket; False (and polling alone) if it cannot."""
        if not hasattr(socket, "AF_UNIX"):
            return False
        path = os.path.join(
            self.directory, f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        )
        if len(os.fsencode(path)) > _MAX_PATH:
            logger.info("no cross-process wake: %s is too long a socket path", path)
            return False
        recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            os.makedirs(self.directory, exist_ok=True)
            recv.bind(path)
            recv.setblocking(False)
            send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            send.setblocking(False)
        except OSError as exc:
            recv.close()
            logger.info("no cross-process wake in %s: %s", self.directory, exc)
            return False
        self.path, self._recv, self._send = path, recv, send
        return True

    def close(self) -> None:
        """Unbind and remove this process's socket (idempotent)."""
        recv, self._recv = self._recv, None
        send, self._send = self._send, None
        if recv is not None:
            trio.lowlevel.notify_closing(recv)
            recv.close()
        if send is not None:
            send.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None

    # ------------------------------------------------------------ sending

    def notify(self, kinds: bytes) -> None:
        """Tell every other process on this file that ``kinds`` changed.
        Never blocks and never raises: a peer whose buffer is full already
        has a wake pending, and a missed wake is caught by the poll."""
        send = self._send
        if send is None:
            return
        for peer in self._list_peers():
            try:
                send.sendto(kinds, peer)
                self.sent += 1
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    self._forget(peer, stale=exc.errno == errno.ECONNREFUSED)
                else:
                    logger.debug("wake to %s failed: %s", peer, exc)

    def _list_peers(self) -> list[str]:
        now = trio.current_time()
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        if mtime != self._listed_mtime or now - self._listed_at >= _RELIST:
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._peers = [
                os.path.join(self.directory, name)
                for name in names
                if name.endswith(".sock")
                and os.path.join(self.directory, name) != self.path
            ]
            self._listed_mtime, self._listed_at = mtime, now
        return self._peers

    def _forget(self, peer: str, *, stale: bool) -> None:
        """Drop ``peer`` from the list; a refusing socket (its process is
        gone: names are never reused) is removed from the directory."""
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(peer)
        with contextlib.suppress(ValueError):
            self._peers.remove(peer)

    # ------------------------------------------------------------ receiving

    async def run(self, fire: Callable[[frozenset[int]], None]) -> None:
        """Receive wakes until cancelled, calling ``fire(kinds)`` once per
        burst with every known kind seen (unknown bytes are ignored)."""
        recv = self._recv
        if recv is None:
            return
        while True:
            await trio.lowlevel.wait_readable(recv)
            seen: set[int] = set()
            while True:  # drain what is already queued: one fire per burst
                try:
                    data = recv.recv(_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # closed under us
                    return
                seen.update(data)
                self.received += 1
            kinds = frozenset(seen) & KINDS
            if kinds:
                fire(kinds)
