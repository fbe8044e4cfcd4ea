"""Backend URLs split safely (pure): a malformed one is a ConfigError."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from ._errors import ConfigError
from ._redact import redact, scrub


def split_url(url: str) -> SplitResult:
    """``urlsplit(url)`` with its host and port checked: an unclosed IPv6
    bracket, a port that is not a number or not in 1..65535 raise
    ConfigError (one line, the password masked) instead of ValueError deep
    inside a driver."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        shown = redact(url)
        # urlsplit's message quotes the text it took for a port, which is a
        # piece of the password when that holds an unescaped character.
        tail = url.split("://", 1)[-1]
        rest = tail[min(tail.find(c) % (len(tail) + 1) for c in "/?#") :]
        detail = (
            scrub(str(exc), url)
            if shown == url or "@" not in rest
            else "the host or port is malformed (percent-encode #, /, ?, @ "
            "in a password: %23, %2F, %3F, %40)"
        )
        raise ConfigError(f"invalid backend URL {shown!r}: {detail}") from None
    if port == 0:
        raise ConfigError(
            f"invalid backend URL {redact(url)!r}: port must be 1-65535, got 0"
        )
    return parts


__all__ = ["split_url"]
