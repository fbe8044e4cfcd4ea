"""The Postgres backend: asyncpg through trio-asyncio.

``open_backend("postgresql://user:pass@host:5432/db?schema=stem")`` opens every
store on one schema (migrated on first use); ``migrate(url)`` applies pending
migrations explicitly (``stem db migrate``). See docs/backends/postgres.md.
"""

from ._backend import PostgresBackend as PostgresBackend
from ._backend import migrate as migrate
from ._backend import open_backend as open_backend
from ._broker import PostgresBroker as PostgresBroker
from ._config import PostgresConfig as PostgresConfig
from ._config import parse_url as parse_url
from ._results import PostgresResults as PostgresResults

__all__ = [
    "PostgresBackend",
    "PostgresBroker",
    "PostgresConfig",
    "PostgresResults",
    "migrate",
    "open_backend",
    "parse_url",
]
