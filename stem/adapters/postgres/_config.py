"""Parsing ``postgresql://`` URLs and the adapter's options."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlunsplit

import attrs

from stem._errors import ConfigError
from stem._redact import redact
from stem._urlcheck import split_url

_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")

#: Query parameters this adapter reads (everything else goes to asyncpg,
#: e.g. ``sslmode``, ``sslrootcert``, ``connect_timeout``).
_OWN = {
    "schema": str,
    "pool_min": int,
    "pool_max": int,
    "poll_interval": float,
    "retry_timeout": float,
    "reap_interval": float,
    "auto_migrate": bool,
    "handoff": bool,
}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected a boolean (true/false), got {value!r}")


@attrs.frozen(kw_only=True)
class PostgresConfig:
    """Where and how to connect; built by :func:`parse_url`.

    ``dsn`` is what asyncpg receives (our own query parameters removed);
    ``url`` is the redacted URL the backend reports.
    """

    dsn: str
    url: str
    schema: str = "stem"
    pool_min: int = 1
    pool_max: int = 10
    #: Seconds between fallback polls when no NOTIFY arrives.
    poll_interval: float = 1.5
    #: Seconds a call keeps retrying while the server cannot be reached.
    retry_timeout: float = 3.0
    #: Seconds between deletions of expired results, locks and so on.
    reap_interval: float = 60.0
    auto_migrate: bool = True
    #: hand a new message straight to an idle waiting claim (leased in the
    #: insert, NOTIFYed to that worker) instead of a wake and a claim
    handoff: bool = True

    @property
    def quoted_schema(self) -> str:
        return f'"{self.schema}"'

    def channel(self, kind: str) -> str:
        """The NOTIFY channel for ``kind`` (jobs, results, control)."""
        return f"{self.schema}.{kind}"


def parse_url(url: str, **options: Any) -> PostgresConfig:
    """Split ``url`` into the asyncpg DSN and this adapter's options.

    Keyword ``options`` override query parameters of the same name.
    """
    parts = split_url(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            f"not a postgresql URL: {redact(url)!r} "
            "(expected postgresql://user:pass@host:port/db?schema=...)"
        )
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN:
            ours[key] = value
        else:
            theirs.append((key, value))
    for key, value in options.items():
        if key not in _OWN:
            raise ConfigError(
                f"unknown postgres backend option {key!r}; known: "
                f"{', '.join(sorted(_OWN))}"
            )
        ours[key] = value
    typed: dict[str, Any] = {}
    for key, value in ours.items():
        kind = _OWN[key]
        try:
            typed[key] = _to_bool(value) if kind is bool else kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"invalid postgres option {key}={value!r}: {exc}"
            ) from None
    schema = typed.get("schema", "stem")
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        raise ConfigError(
            f"invalid schema name {schema!r}: use letters, digits and _ "
            "(at most 48 characters, not starting with a digit)"
        )
    for key in ("poll_interval", "retry_timeout", "reap_interval"):
        if key in typed and not typed[key] > 0:
            raise ConfigError(f"postgres option {key} must be > 0, got {typed[key]!r}")
    if typed.get("pool_min", 1) < 1 or typed.get("pool_max", 10) < typed.get(
        "pool_min", 1
    ):
        raise ConfigError("postgres options need 1 <= pool_min <= pool_max")
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(theirs)))
    shown = urlunsplit(parts._replace(query=urlencode([*theirs, ("schema", schema)])))
    return PostgresConfig(dsn=dsn, url=redact(shown), **typed)
