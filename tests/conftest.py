"""Shared fixtures. Server fixtures (redis-server, postgres) live in
``tests/fixtures_*.py`` and are loaded as plugins, beside the contract suite's
pytest plugin (``stem.testing.pytest_plugin``) and pytest's ``pytester``."""

from __future__ import annotations

pytest_plugins = [
    "pytester",
    "stem.testing.pytest_plugin",
    "tests.fixtures_memory",
    "tests.fixtures_sqlite",
    "tests.fixtures_redis",
    "tests.fixtures_redis_cluster",
    "tests.fixtures_postgres",
]
