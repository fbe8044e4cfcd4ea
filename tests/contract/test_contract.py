"""Every contract check of ``stem.testing``, run against every backend."""

from __future__ import annotations

from stem.testing import BackendFactory, Check, run_check


def test_contract(
    stem_backend_factory: BackendFactory, stem_contract_check: Check
) -> None:
    """The backend passes one contract check (named in the test id)."""
    run_check(stem_contract_check, stem_backend_factory)
