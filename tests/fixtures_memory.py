"""Fixtures for the memory backend (filled in by the memory adapter's work)."""
