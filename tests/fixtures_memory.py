"""Fixtures for the memory backend."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from stem.adapters.memory import MemoryBackend, open_backend


@pytest.fixture
def memory_backend_factory() -> Callable[
    [], AbstractAsyncContextManager[MemoryBackend]
]:
    """A callable opening a fresh, empty in-memory backend."""

    def factory() -> AbstractAsyncContextManager[MemoryBackend]:
        return open_backend("memory://")

    return factory
