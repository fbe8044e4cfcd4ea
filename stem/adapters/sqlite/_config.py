"""Parsing ``sqlite:///...`` URLs (SQLAlchemy's form) into a config record."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from stem._errors import ConfigError

MEMORY = ":memory:"
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@attrs.frozen(kw_only=True)
class SQLiteConfig:
    """Where the database lives and how it is driven.

    ``path`` is absolute (a relative URL path is resolved against the working
    directory when the backend opens) or ``":memory:"``.
    """

    path: str
    poll_interval: float = 0.05
    busy_timeout: float = 10.0
    synchronous: str = "NORMAL"
    broadcast_retention: float = 60.0

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY


def _positive(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"sqlite option {name} must be a number, got {raw!r}"
        ) from None
    if not value > 0:
        raise ConfigError(f"sqlite option {name} must be > 0 seconds, got {raw!r}")
    return value


def parse_url(url: str, **options: Any) -> SQLiteConfig:
    """``sqlite:///relative.db`` (relative to the working directory),
    ``sqlite:////abs/path.db`` (absolute) or ``sqlite:///:memory:``.

    Query options (also accepted as keyword arguments, which win):
    ``poll_interval`` (seconds, default 0.05), ``busy_timeout`` (seconds,
    default 10), ``synchronous`` (OFF, NORMAL, FULL, EXTRA; default NORMAL).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ConfigError(
            f"invalid sqlite URL {url!r}: expected sqlite:///relative.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory: (three slashes "
            "before a relative path, four before an absolute one)"
        )
    raw_path = unquote(parts.path)
    if not raw_path.startswith("/") or raw_path == "/":
        raise ConfigError(f"sqlite URL {url!r} names no database file")
    path = raw_path[1:]
    if path != MEMORY:
        path = os.path.abspath(path)
    merged: dict[str, Any] = dict(parse_qsl(parts.query))
    merged.update(options)
    unknown = set(merged) - {"poll_interval", "busy_timeout", "synchronous"}
    if unknown:
        raise ConfigError(
            f"unknown sqlite option(s) {', '.join(sorted(unknown))}; known: "
            "poll_interval, busy_timeout, synchronous"
        )
    config = SQLiteConfig(path=path)
    if "poll_interval" in merged:
        config = attrs.evolve(
            config, poll_interval=_positive("poll_interval", merged["poll_interval"])
        )
    if "busy_timeout" in merged:
        config = attrs.evolve(
            config, busy_timeout=_positive("busy_timeout", merged["busy_timeout"])
        )
    if "synchronous" in merged:
        sync = str(merged["synchronous"]).upper()
        if sync not in _SYNCHRONOUS:
            raise ConfigError(
                f"sqlite option synchronous must be one of {', '.join(_SYNCHRONOUS)}, "
                f"got {merged['synchronous']!r}"
            )
        config = attrs.evolve(config, synchronous=sync)
    return config
