"""Fixtures for the sqlite backend (filled in by the sqlite adapter's work)."""
