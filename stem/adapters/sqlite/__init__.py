"""The SQLite backend: the embedded default (stdlib ``sqlite3``, WAL mode).

``open_backend("sqlite:///stem.db")`` opens every store on one file that
several worker and producer processes may share.
"""

from ._backend import SQLiteBackend as SQLiteBackend
from ._backend import open_backend as open_backend
from ._config import SQLiteConfig as SQLiteConfig
from ._config import parse_url as parse_url

__all__ = ["SQLiteBackend", "SQLiteConfig", "open_backend", "parse_url"]
