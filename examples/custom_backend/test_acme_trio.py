"""One contract check inside a Trio run of your own (pytest-trio)."""

import pytest
from acme_backend import open_acme_backend

import stem.testing


@pytest.mark.trio
async def test_lock_expiry(mock_clock):
    async with stem.testing.open_harness(open_acme_backend) as harness:
        await stem.testing.check_lock_expiry(harness)
