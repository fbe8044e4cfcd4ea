"""Under pytest, a failed check shows the values in its ``assert``.

pytest rewrites the asserts of test modules, and of other modules only when
they are registered before their import: :mod:`stem.testing` imports this
module before the checks. Without pytest nothing happens.
"""

from __future__ import annotations

try:
    import pytest
except ImportError:  # pytest is optional
    pass
else:
    pytest.register_assert_rewrite(
        "stem.testing._checks_broker",
        "stem.testing._checks_hostile",
        "stem.testing._checks_schedules",
        "stem.testing._checks_stores",
        "stem.testing._checks_workflows",
        "stem.testing._harness",
    )
