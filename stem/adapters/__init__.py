"""Backends implementing :mod:`stem.contracts`: memory, sqlite, redis, postgres."""
