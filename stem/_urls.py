"""Opening a backend from a URL; adapters are imported only when used."""

from __future__ import annotations

import importlib
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._redact import redact as redact
from ._urlcheck import split_url

if TYPE_CHECKING:
    from .contracts import Backend

_SCHEMES = {
    "memory": "stem.adapters.memory",
    "sqlite": "stem.adapters.sqlite",
    "redis": "stem.adapters.redis",
    "rediss": "stem.adapters.redis",
    "redis+cluster": "stem.adapters.redis",
    "rediss+cluster": "stem.adapters.redis",
    "postgres": "stem.adapters.postgres",
    "postgresql": "stem.adapters.postgres",
}
#: schemes whose URLs name several hosts (``h1:p1,h2:p2``)
_MULTI_HOST = frozenset({"redis+cluster", "rediss+cluster"})
_EXTRAS = {"stem.adapters.redis": "redis", "stem.adapters.postgres": "postgres"}


def open_backend(url: str, **options: Any) -> AbstractAsyncContextManager[Backend]:
    """Open the backend named by ``url`` (``memory://``, ``sqlite:///x.db``,
    ``redis://...``, ``postgresql://...``) as an async context manager."""
    if not isinstance(url, str) or "://" not in url:
        shown = redact(url) if isinstance(url, str) else url
        raise ConfigError(
            f"invalid backend URL {shown!r}: expected memory://, sqlite:///path.db, "
            "redis://host:port/db or postgresql://user@host/db"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _MULTI_HOST:
        # a malformed host or port is a ConfigError, for every scheme (the
        # cluster schemes' adapter checks each of their host:port seeds)
        split_url(url)
    module_name = _SCHEMES.get(scheme)
    if module_name is None:
        raise ConfigError(
            f"unknown backend scheme {scheme!r} in {redact(url)!r}; "
            f"known: {', '.join(sorted(_SCHEMES))}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(module_name)
        hint = f" (install trio-stem[{extra}])" if extra else ""
        raise ConfigError(
            f"the {scheme} backend cannot be loaded: {exc}{hint}"
        ) from exc
    opener: Any = module.open_backend
    cm: AbstractAsyncContextManager[Backend] = opener(url, **options)
    return cm
