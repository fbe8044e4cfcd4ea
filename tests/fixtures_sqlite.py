"""Fixtures for the sqlite backend: a fresh database file per backend."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from stem.adapters.sqlite import SQLiteBackend, open_backend


@pytest.fixture
def sqlite_backend_factory(
    tmp_path: Path,
) -> Callable[..., AbstractAsyncContextManager[SQLiteBackend]]:
    """A callable returning ``open_backend`` on a new, empty file in tmp_path
    each time (keyword options are passed through)."""
    counter = itertools.count()

    def factory(**options: Any) -> AbstractAsyncContextManager[SQLiteBackend]:
        path = tmp_path / f"stem-{next(counter)}.db"
        return open_backend(f"sqlite:///{path}", **options)

    return factory
