"""Shared fixtures. Server fixtures (redis-server, postgres) live in
``tests/fixtures_*.py`` and are loaded as plugins."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures_memory",
    "tests.fixtures_sqlite",
    "tests.fixtures_redis",
    "tests.fixtures_postgres",
]
