"""JSON encoding of task arguments, envelopes and results.

Arguments are JSON values: dict, list, str, int, float (finite), bool, None;
tuples are accepted and arrive as lists. Encoding is checked at enqueue time
so a bad argument raises before anything is written, with the path of the
offending value in the message.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ._envelope import Envelope
from ._errors import DecodeError, EncodeError
from ._result import ErrorInfo, TaskResult
from ._states import TaskState

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_dumps = _encoder.encode
_loads = json.loads

FORMAT_VERSION = 1


def _find_bad(value: Any, path: str) -> tuple[str, str] | None:
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return path, f"non-finite float {value!r}"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}[{key!r}]", f"non-string key {key!r}"
            bad = _find_bad(item, f"{path}[{key!r}]")
            if bad:
                return bad
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            bad = _find_bad(item, f"{path}[{index}]")
            if bad:
                return bad
        return None
    return path, f"value of type {type(value).__name__} ({value!r:.60})"


def dumps(value: Any, *, what: str = "value") -> str:
    """Encode ``value`` as JSON text or raise EncodeError naming the bad part."""
    try:
        return _dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        bad = _find_bad(value, what)
        where = f"{bad[0]} is a {bad[1]}" if bad else str(exc)
        raise EncodeError(
            f"cannot encode {where}; task arguments and results must be JSON "
            "values (dict with str keys, list, str, int, finite float, bool, None)"
        ) from exc


def loads(text: str | bytes) -> Any:
    return _loads(text)


def canonical_args(args: Any) -> dict[str, Any]:
    """Validate ``args`` and return the copy a worker will see.

    Raises EncodeError (naming the offending argument) for anything that is
    not a JSON object of JSON values; tuples become lists.
    """
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise EncodeError(
            f"task args must be a dict with str keys, got {type(args).__name__}"
        )
    result: dict[str, Any] = _loads(dumps(args, what="args"))
    return result


def canonical_key(name: str, args: dict[str, Any]) -> str:
    """A stable text for ``name`` and ``args`` (sorted keys) used for uniqueness."""
    return name + "\x00" + json.dumps(args, sort_keys=True, separators=(",", ":"))


def envelope_to_dict(env: Envelope) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "id": env.id,
        "name": env.name,
        "args": env.args,
        "headers": env.headers,
        "queue": env.queue,
        "priority": env.priority,
        "attempt": env.attempt,
        "max_retries": env.max_retries,
        "not_before": env.not_before,
        "enqueued_at": env.enqueued_at,
        "expires": env.expires,
        "meta": env.meta,
    }


def envelope_from_dict(data: Any) -> Envelope:
    if not isinstance(data, dict):
        raise DecodeError(
            f"an envelope must be a JSON object, got {type(data).__name__}"
        )
    get = data.get
    ident, name = get("id"), get("name")
    args, headers, meta = get("args", {}), get("headers", {}), get("meta", {})
    queue, priority = get("queue", "default"), get("priority", 0)
    attempt, max_retries = get("attempt", 1), get("max_retries", 0)
    not_before, expires = get("not_before"), get("expires")
    enqueued_at = get("enqueued_at") or 0.0
    # Fast path: one combined check; the slow path below says what is wrong.
    if (
        get("v", FORMAT_VERSION) == FORMAT_VERSION
        and type(ident) is str
        and ident
        and type(name) is str
        and name
        and type(args) is dict
        and type(headers) is dict
        and type(meta) is dict
        and type(queue) is str
        and type(priority) is int
        and type(attempt) is int
        and type(max_retries) is int
        and (not_before is None or type(not_before) in _NUMBER)
        and (expires is None or type(expires) in _NUMBER)
        and type(enqueued_at) in _NUMBER
    ):
        return Envelope(
            id=ident,
            name=name,
            args=args,
            headers=headers,
            queue=queue,
            priority=priority,
            attempt=attempt,
            max_retries=max_retries,
            not_before=not_before,
            enqueued_at=enqueued_at,
            expires=expires,
            meta=meta,
        )
    version = get("v", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DecodeError(f"unsupported envelope format version {version!r}")
    if "id" not in data or "name" not in data:
        missing = "id" if "id" not in data else "name"
        raise DecodeError(f"envelope is missing the field {missing!r}")
    return Envelope(
        id=_str(ident, "id"),
        name=_str(name, "name"),
        args=_dict(args, "args"),
        headers=_dict(headers, "headers"),
        queue=_str(queue, "queue"),
        priority=_int(priority, "priority"),
        attempt=_int(attempt, "attempt"),
        max_retries=_int(max_retries, "max_retries"),
        not_before=_opt_float(not_before, "not_before"),
        enqueued_at=float(_opt_float(enqueued_at, "enqueued_at") or 0.0),
        expires=_opt_float(expires, "expires"),
        meta=_dict(meta, "meta"),
    )


_NUMBER = (int, float)


def encode_envelope(env: Envelope) -> bytes:
    return dumps(envelope_to_dict(env), what="envelope").encode()


def decode_envelope(body: bytes | str) -> Envelope:
    """Decode a message body; raises DecodeError with the reason."""
    try:
        data = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"message body is not valid JSON: {exc}") from None
    return envelope_from_dict(data)


def guess_task_id(body: bytes | str) -> str:
    """The ``id`` field of a body that is not a valid envelope, when it has
    one, else ``""`` (for dead-lettering undecodable messages by id)."""
    try:
        data = _loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    ident = data.get("id") if isinstance(data, dict) else None
    return ident if isinstance(ident, str) else ""


def result_to_dict(result: TaskResult) -> dict[str, Any]:
    return {
        "task_id": result.task_id,
        "state": result.state.value,
        "value": result.value,
        "error": result.error.to_dict() if result.error else None,
        "attempt": result.attempt,
        "name": result.name,
        "queue": result.queue,
        "updated_at": result.updated_at,
        "meta": result.meta,
    }


def result_from_dict(data: dict[str, Any]) -> TaskResult:
    error = data.get("error")
    return TaskResult(
        task_id=data["task_id"],
        state=TaskState(data["state"]),
        value=data.get("value"),
        error=ErrorInfo.from_dict(error) if error else None,
        attempt=int(data.get("attempt", 0)),
        name=data.get("name", ""),
        queue=data.get("queue", ""),
        updated_at=float(data.get("updated_at", 0.0)),
        meta=data.get("meta") or {},
    )


def encode_result(result: TaskResult) -> bytes:
    return dumps(result_to_dict(result), what="result").encode()


def decode_result(body: bytes | str) -> TaskResult:
    return result_from_dict(_loads(body))


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise DecodeError(f"envelope field {field!r} must be a non-empty string")
    return value


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"envelope field {field!r} must be an integer")
    return value


def _opt_float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"envelope field {field!r} must be a number or null")
    return float(value)


def _dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"envelope field {field!r} must be an object")
    return value
