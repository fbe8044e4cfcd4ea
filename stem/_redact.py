"""Secrets out of what is shown: :func:`redact` for backend URLs,
:func:`redact_text` for any text that may contain URLs, :func:`scrub` for a
message about one known URL.

Masked: the password of the userinfo (``user:***@host``), whatever
characters it holds, even unescaped ``#``, ``/``, ``?`` or ``@`` that make a
URL parser split it in the wrong place; and the values of query parameters
whose name says secret (``password``, ``pass``, ``pwd``, ``secret``,
``token``, ``auth``, ``credential``, ``api_key``, ``access_key``, ...).
A URL is parsed first; when the parse is ambiguous (an ``@`` after the
authority) or fails, a pattern masks generously: more than the password
rather than part of it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: a URL in free text (up to white space or a quote)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
#: what follows the userinfo's ``@``: a host (name, IPv4, [IPv6], or a
#: cluster's comma-separated seeds), an optional port, then the path,
#: query, fragment or the end
_HOST_AFTER = re.compile(
    r"(?:\[[0-9A-Fa-f:.%\w]*\]|[\w.\-%]*)(?::\d*)?"
    r"(?:,(?:\[[0-9A-Fa-f:.%\w]*\]|[\w.\-%]*)(?::\d*)?)*(?:[/?#]|$)"
)
#: query parameter names whose values are secrets
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|auth|credential|api[_\-]?key|access[_\-]?key"
    r"|private[_\-]?key|signature|^sig$|^key$",
    re.IGNORECASE,
)
#: a query parameter: its separator, name, ``=`` and value (up to the next
#: parameter that looks like ``&name=``, or the end: a secret value may hold
#: an unescaped ``&`` or ``#``)
_PARAM = re.compile(r"([?&;])([^=&;#?\s]+)=(.*?)(?=[&;][^=&;#?\s]+=|$)", re.DOTALL)


def redact(url: str) -> str:
    """``url`` with its password and secret query values replaced by
    ``***`` (safe to log). Total: never raises, whatever ``url`` holds."""
    match = _SCHEME.match(url)
    if match is None:
        return _mask_loose(url)
    prefix, rest = url[: match.end()], url[match.end() :]
    authority_end = _first(rest, "/?#")
    at = _userinfo_end(rest, authority_end)
    if at is not None:
        userinfo = rest[:at]
        user, colon, _password = userinfo.partition(":")
        if colon:
            rest = f"{user}:{MASK}{rest[at:]}"
    return prefix + _mask_query(rest)


def _first(text: str, chars: str) -> int:
    found = [i for i in (text.find(c) for c in chars) if i >= 0]
    return min(found) if found else len(text)


def _userinfo_end(rest: str, authority_end: int) -> int | None:
    """Where the userinfo of ``rest`` (a URL after ``scheme://``) ends (the
    index of its ``@``), or None when it has none. The ``@`` that ends a
    well-formed authority is taken as parsed; with another ``@`` later
    (an unescaped character in the password), the last ``@`` followed by
    something shaped like a host is."""
    last = rest.rfind("@")
    if last < 0:
        return None
    if last < authority_end:
        return last  # the well-formed case: user:pass@host/...
    for at in range(last, -1, -1):
        if rest[at] == "@" and _HOST_AFTER.match(rest, at + 1):
            userinfo = rest[:at]
            if ":" in userinfo or at < authority_end:
                return at
    first = rest.find("@")
    return first if first < authority_end else None


def _mask_query(rest: str) -> str:
    if "=" not in rest:
        return rest
    query_at = rest.find("?")
    if query_at < 0:
        return rest
    head, query = rest[:query_at], rest[query_at:]

    def mask(m: re.Match[str]) -> str:
        sep, name, value = m.group(1), m.group(2), m.group(3)
        if value and _SECRET_NAME.search(name):
            return f"{sep}{name}={MASK}"
        return m.group(0)

    return head + _PARAM.sub(mask, query)


#: ``user:password@`` in text that is not a parseable URL
_LOOSE_USERINFO = re.compile(r"([\w.\-%]*):[^\s@]+@")


def _mask_loose(text: str) -> str:
    """Mask what looks like a password in a string that is not a URL (a
    missing ``://``): ``user:secret@`` and secret query values."""
    masked = _LOOSE_USERINFO.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _mask_query(masked) if "?" in masked else masked


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (see :func:`redact`)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact(match.group(0)), text)


def secrets_of(url: str) -> list[str]:
    """The secret parts of ``url`` (its password, secret query values), as
    written, longest first: what :func:`scrub` removes from messages."""
    found: list[str] = []
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    at = _userinfo_end(rest, _first(rest, "/?#")) if match else None
    if at is not None:
        _user, colon, password = rest[:at].partition(":")
        if colon and password:
            found.append(password)
    query_at = rest.find("?")
    if query_at >= 0:
        for m in _PARAM.finditer(rest[query_at:]):
            if m.group(3) and _SECRET_NAME.search(m.group(2)):
                found.append(m.group(3))
    try:
        parsed = urlsplit(url).password
    except ValueError:
        parsed = None
    if parsed:
        found.append(parsed)
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error about ``url``) with ``url`` shown redacted, any
    other URL redacted, and every secret of ``url`` masked wherever it
    appears (a driver may quote a piece of it)."""
    clean = text.replace(url, redact(url)) if url else text
    clean = redact_text(clean)
    for secret in secrets_of(url):
        if len(secret) >= 3:
            clean = clean.replace(secret, MASK)
    return clean


__all__ = ["redact", "redact_text", "scrub", "secrets_of"]
