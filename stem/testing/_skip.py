"""How a contract check skips: loudly, with the reason, and pytest-aware.

While a pytest test runs (pytest sets ``PYTEST_CURRENT_TEST``), a skip raises
pytest's own ``pytest.skip.Exception`` so pytest reports the check as skipped.
Anywhere else (a script, another test runner, or no pytest installed) it
raises :class:`CheckSkipped`, which a caller can catch and count. Either way
the reason is printed first, so a skipped check never looks like a passed one.
pytest is optional: it is imported only when a check skips inside a test.
"""

from __future__ import annotations

import os
from typing import NoReturn


class CheckSkipped(Exception):
    """A contract check did not run, and why (raised outside pytest tests).

    Inside a pytest test the skip is ``pytest.skip.Exception`` instead.
    """


def skip(reason: str) -> NoReturn:
    """Print ``SKIPPED: reason`` and end the running check as skipped.

    Raises ``pytest.skip.Exception`` while a pytest test runs, else
    :class:`CheckSkipped`.
    """
    print(f"SKIPPED: {reason}")
    if "PYTEST_CURRENT_TEST" in os.environ:
        try:
            import pytest  # optional: imported only when a test skips
        except ImportError:
            pass
        else:
            pytest.skip(reason)
    raise CheckSkipped(reason)
