"""Text from outside shown safely: control characters escaped (pure).

Task ids, names, error messages and message bodies come from producers, and
some from anyone who can write to the broker. Written raw to a log line or a
terminal, a newline forges a log line and an escape sequence rewrites the
screen. :func:`escape_control` turns every such character into the escape
Python's ``repr`` would show (``\\n``, ``\\x1b``, ``\\u202e``), so what is
printed is what is stored, on one line.
"""

from __future__ import annotations

import re

#: C0 and C1 controls, DEL, line/paragraph separators and bidirectional
#: overrides (which reorder what a terminal shows).
_UNSAFE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ANY = re.compile(f"[{_UNSAFE}]")
_BUT_LINES = re.compile(f"(?![\n\t])[{_UNSAFE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters escaped; ``keep_newlines`` keeps
    ``\\n`` and ``\\t`` (a traceback shown on several lines)."""
    pattern = _BUT_LINES if keep_newlines else _ANY
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def has_control(text: str) -> bool:
    """Whether :func:`escape_control` would change ``text``."""
    return _ANY.search(text) is not None


__all__ = ["escape_control", "has_control"]
