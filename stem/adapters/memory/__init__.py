"""The in-memory backend: every store of :mod:`stem.contracts` in one process.

Open it with ``stem._urls.open_backend("memory://")`` or :func:`open_backend`.
"""

from ._backend import MemoryBackend as MemoryBackend
from ._backend import open_backend as open_backend
from ._broker import BroadcastStatistics as BroadcastStatistics
from ._broker import MemoryBroker as MemoryBroker
from ._results import MemoryResultBackend as MemoryResultBackend
from ._stores import MemoryHeartbeatStore as MemoryHeartbeatStore
from ._stores import MemoryLockStore as MemoryLockStore
from ._stores import MemoryRateLimitStore as MemoryRateLimitStore
from ._stores import MemoryRevocationStore as MemoryRevocationStore

__all__ = [
    "BroadcastStatistics",
    "MemoryBackend",
    "MemoryBroker",
    "MemoryHeartbeatStore",
    "MemoryLockStore",
    "MemoryRateLimitStore",
    "MemoryResultBackend",
    "MemoryRevocationStore",
    "open_backend",
]
