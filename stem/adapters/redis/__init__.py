"""The Redis backend: redis-py's asyncio client driven from Trio through
trio-asyncio. See ``docs/backends/redis.md``."""

from ._backend import RedisBackend as RedisBackend
from ._backend import RedisClusterBackend as RedisClusterBackend
from ._backend import RedisStores as RedisStores
from ._backend import open_backend as open_backend
from ._broker import RedisBroker as RedisBroker
from ._results import RedisResults as RedisResults

__all__ = [
    "RedisBackend",
    "RedisBroker",
    "RedisClusterBackend",
    "RedisResults",
    "RedisStores",
    "open_backend",
]
