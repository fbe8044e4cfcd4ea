"""The contract suite for pytest: enable it with
``pytest_plugins = ["stem.testing.pytest_plugin"]``.

It adds two fixtures:

``stem_contract_check``
    One check of :func:`stem.testing.all_checks`; a test that takes it runs
    once per check, with the check's name as the test id.
``stem_backend_factory``
    A placeholder that fails, naming what to do: define your own fixture of
    this name returning a :data:`stem.testing.BackendFactory` (a callable that
    opens a fresh, empty backend as an async context manager).

The whole suite is then one test::

    def test_stem_contract(stem_contract_check, stem_backend_factory):
        stem.testing.run_check(stem_contract_check, stem_backend_factory)

``run_check`` starts its own Trio run under a ``MockClock``, so the test is a
plain function: pytest-trio is not needed. See
docs/backends/writing-a-backend.md.
"""

from __future__ import annotations

import pytest

from ._harness import BackendFactory, Check
from ._suite import all_checks

_CHECKS = all_checks()


@pytest.fixture(params=list(_CHECKS.values()), ids=list(_CHECKS))
def stem_contract_check(request: pytest.FixtureRequest) -> Check:
    """One contract check (the test id names it); run it with
    :func:`stem.testing.run_check`."""
    check: Check = request.param
    return check


@pytest.fixture
def stem_backend_factory() -> BackendFactory:
    """Fails: the project under test defines this fixture (see the module
    docstring)."""
    pytest.fail(
        "define a `stem_backend_factory` fixture returning a callable that opens "
        "a fresh, empty backend as an async context manager "
        "(see stem.testing.pytest_plugin)",
        pytrace=False,
    )
