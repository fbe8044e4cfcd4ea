"""Stem's adapter contract suite, run against the acme backend."""

import pytest
from acme_backend import open_acme_backend

from stem.testing import BackendFactory, Check, run_check

pytest_plugins = ["stem.testing.pytest_plugin"]


@pytest.fixture
def stem_backend_factory() -> BackendFactory:
    return open_acme_backend


def test_stem_contract(
    stem_contract_check: Check, stem_backend_factory: BackendFactory
) -> None:
    """The acme backend passes one contract check (named in the test id)."""
    run_check(stem_contract_check, stem_backend_factory)
