"""Backend URLs split safely (pure): a malformed one is a ConfigError."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from ._errors import ConfigError
from ._redact import redact


def split_url(url: str) -> SplitResult:
    """``urlsplit(url)`` with its host and port checked: an unclosed IPv6
    bracket, a port that is not a number or not in 1..65535 raise
    ConfigError (one line, the password masked) instead of ValueError deep
    inside a driver."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid backend URL {redact(url)!r}: {exc}") from None
    if port == 0:
        raise ConfigError(
            f"invalid backend URL {redact(url)!r}: port must be 1-65535, got 0"
        )
    return parts


__all__ = ["split_url"]
