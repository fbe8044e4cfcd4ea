"""Fixtures for the postgres backend (filled in by the postgres adapter's work)."""
