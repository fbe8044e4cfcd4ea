"""The command modules of ``stem`` (see :mod:`stem.cli` for the registry)."""
