"""Lifecycle events as records of the backend's event log (JSON objects).

``encode_event`` writes a signal payload with the node that emitted it;
``decode_event`` reads one back as the same payload type, totally: any body
that is not a record of a known signal with fields of the right types raises
:class:`stem.DecodeError` (the reader skips it and counts it), never
anything else. A task's value is kept only when its JSON is small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._codec import decode_object, dumps, error_from_dict, loads
from ._errors import DecodeError
from ._progress import Progress
from ._result import ErrorInfo
from ._signals import SIGNALS, Event

#: Signals the relay copies to the backend: what an operator watches.
#: ``publish_*`` (producers), ``task_postrun`` (twin of succeeded/failed),
#: ``actor_started`` and ``control_received`` stay in their process.
RELAYED_SIGNALS: tuple[str, ...] = tuple(
    name
    for name in SIGNALS
    if name
    not in {
        "publish_before",
        "publish_after",
        "task_postrun",
        "actor_started",
        "control_received",
    }
)

#: A task's value travels with its event only under this many bytes of JSON.
MAX_VALUE_BYTES = 2048
#: Text fields are cut to this many characters (tracebacks included).
MAX_TEXT = 8192


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def _plain(name: str, value: Any) -> Any:
    if name == "value":
        try:
            text = dumps(value, what="event value")
        except Exception:
            return None
        return loads(text) if len(text) <= MAX_VALUE_BYTES else None
    if isinstance(value, ErrorInfo):
        return {k: _cut(v) for k, v in value.to_dict().items()}
    if isinstance(value, Progress):
        return value.to_dict()
    if isinstance(value, tuple):
        return [str(v) for v in value]
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def event_to_dict(event: Event, *, origin: str = "") -> dict[str, Any]:
    """The JSON-ready form of ``event`` (``origin`` names its node when the
    event's own is empty)."""
    data: dict[str, Any] = {}
    for field in attrs.fields(type(event)):
        data[field.name] = _plain(field.name, getattr(event, field.name))
    if not data.get("origin"):
        data["origin"] = origin
    return data


def encode_event(event: Event, *, origin: str) -> bytes:
    """``event`` as one log record (UTF-8 JSON)."""
    return dumps(event_to_dict(event, origin=origin), what="event").encode()


def _is_num(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _num(value: Any) -> float:
    if not _is_num(value):
        raise TypeError
    return float(value)


def _opt_num(value: Any) -> float | None:
    return None if value is None else _num(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError
    return tuple(value)


def _error(value: Any) -> ErrorInfo | None:
    try:
        return error_from_dict(value)
    except DecodeError:
        raise TypeError from None


def _progress(value: Any) -> Progress | None:
    if value is None:
        return None
    try:
        return Progress.from_dict(value)
    except DecodeError:
        raise TypeError from None


def _any(value: Any) -> Any:
    return value


#: Field annotation (as written in stem/_signals.py) -> checker.
_READERS: Mapping[str, Callable[[Any], Any]] = {
    "str": _str,
    "str | None": _opt_str,
    "int": _int,
    "float": _num,
    "float | None": _opt_num,
    "bool": _bool,
    "tuple[str, ...]": _strs,
    "ErrorInfo | None": _error,
    "Progress | None": _progress,
    "Any": _any,
}


def event_from_dict(data: Any) -> Event:
    """A signal payload from its dict form; DecodeError when it is not one."""
    if not isinstance(data, dict):
        raise DecodeError("an event must be a JSON object")
    signal = data.get("signal")
    kind = SIGNALS.get(signal) if isinstance(signal, str) else None
    if kind is None:
        raise DecodeError(f"unknown event signal {str(signal)[:60]!r}")
    values: dict[str, Any] = {}
    for field in attrs.fields(kind):
        if field.name not in data:
            if field.default is attrs.NOTHING:
                raise DecodeError(f"event {signal} lacks field {field.name!r}")
            continue
        reader = _READERS.get(str(field.type))
        if reader is None:  # a payload field this decoder does not know
            raise DecodeError(f"event field {field.name!r} cannot be read")
        try:
            values[field.name] = reader(data[field.name])
        except TypeError:
            raise DecodeError(
                f"event {signal} field {field.name!r} has the wrong type"
            ) from None
    try:
        return kind(**values)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"event {signal} is not valid: {exc}") from None


def decode_event(body: object) -> Event:
    """One log record back as its payload type; DecodeError (only) when it
    is not a record of a known signal."""
    return event_from_dict(decode_object(body, what="event"))
