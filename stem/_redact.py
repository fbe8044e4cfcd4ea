"""Secrets out of what is shown: :func:`redact` for backend URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log). Total:
    a URL too malformed to parse (a bad port, an unclosed IPv6 bracket) has
    its userinfo password masked by pattern instead."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _USERINFO.sub(r"\1:***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
