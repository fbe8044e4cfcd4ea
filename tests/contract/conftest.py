"""The contract suite (``stem.testing``), parametrised over every backend."""

from __future__ import annotations

import pytest

from stem.testing import BackendFactory

BACKENDS = ["memory", "sqlite", "redis", "redis_cluster", "postgres"]


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def stem_backend_factory(request: pytest.FixtureRequest) -> BackendFactory:
    """The ``<name>_backend_factory`` fixture of the parametrised backend
    (from ``tests/fixtures_<name>.py``)."""
    factory: BackendFactory = request.getfixturevalue(
        f"{request.param}_backend_factory"
    )
    return factory
