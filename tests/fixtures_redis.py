"""Fixtures for the redis backend (filled in by the redis adapter's work)."""
