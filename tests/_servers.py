"""Helpers for tests that need a real server process."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip with ``reason`` on a laptop; fail when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs this: {reason}", pytrace=False)
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
