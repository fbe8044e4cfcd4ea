"""JSON encoding of task arguments, envelopes and results.

Arguments are JSON values: dict, list, str, int, float (finite), bool, None;
tuples are accepted and arrive as lists. Encoding is checked at enqueue time
so a bad argument raises before anything is written, with the path of the
offending value in the message.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._canvas import META_KEY as CANVAS_KEY
from ._canvas import check_canvas_meta
from ._envelope import Envelope
from ._errors import DecodeError, EncodeError
from ._progress import Progress
from ._result import ErrorInfo, TaskResult
from ._states import TaskState
from .contracts import Revocation, WorkerInfo

T = TypeVar("T")
logger = logging.getLogger("stem.codec")

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_dumps = _encoder.encode

FORMAT_VERSION = 1

#: The default ``max_message_bytes``: the largest encoded envelope a client
#: enqueues and a worker runs (8 MiB; see docs/reliability.md).
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: The deepest nesting of arrays and objects in any document Stem encodes or
#: decodes (an envelope with its args and meta, a result, a broadcast).
MAX_DEPTH = 100
#: The most bytes of an undecodable body a dead letter keeps (``raw``).
MAX_RAW_BYTES = 64 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]!r} is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
#: For text this codec wrote itself (finite by construction).
_plain_decoder = json.JSONDecoder()


def depth(value: Any, *, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of arrays and objects in ``value`` (a scalar is 0),
    counted up to ``limit + 1`` at most (iterative: any depth is safe)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _may_be_deep(text: str | bytes) -> bool:
    """False when ``text`` cannot nest deeper than MAX_DEPTH (it has no more
    opening brackets than that): a C-speed test that spares the walk."""
    if isinstance(text, str):
        return text.count("{") + text.count("[") > MAX_DEPTH
    return text.count(b"{") + text.count(b"[") > MAX_DEPTH


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
    """Encode ``value`` as JSON text or raise EncodeError naming the bad part.

    Everything this returns, :func:`loads` reads back: NaN and Infinity are
    refused, and so is nesting deeper than MAX_DEPTH."""
    try:
        text = _dumps(value)
    except RecursionError as exc:
        raise EncodeError(
            f"cannot encode {what}: nested deeper than {MAX_DEPTH} levels"
        ) from exc
    except (TypeError, ValueError) as exc:
        bad = None
        try:
            bad = _find_bad(value, what)
        except RecursionError:
            pass
        where = f"{bad[0]} is a {bad[1]}" if bad else str(exc)
        raise EncodeError(
            f"cannot encode {where}; task arguments and results must be JSON "
            "values (dict with str keys, list, str, int, finite float, bool, None)"
        ) from exc
    if _may_be_deep(text) and depth(value) > MAX_DEPTH:
        raise EncodeError(
            f"cannot encode {what}: nested deeper than {MAX_DEPTH} levels"
        )
    return text


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """Decode JSON text (str, or UTF-8 bytes) as Stem's codec writes it.

    Total: whatever the input (another type, bad UTF-8, invalid JSON, NaN or
    Infinity, a number out of range, nesting deeper than MAX_DEPTH) it
    returns a JSON value or raises DecodeError, never anything else."""
    if isinstance(text, bytearray | memoryview):
        text = bytes(text)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8 text: {exc}") from None
    elif not isinstance(text, str):
        raise DecodeError(f"expected JSON text, got a {type(text).__name__}")
    try:
        value = _decoder.decode(text)
    except RecursionError:
        raise DecodeError(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if _may_be_deep(text) and depth(value) > MAX_DEPTH:
        raise DecodeError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def check_size(size: int, limit: int | None, *, what: str = "message") -> None:
    """Raise EncodeError if a ``size``-byte message passes ``limit``."""
    if limit is not None and size > limit:
        raise EncodeError(
            f"the {what} is {size} bytes, more than max_message_bytes ({limit}); "
            "pass large data by reference (a URL, a key) instead"
        )


def clip_raw(body: bytes) -> bytes:
    """``body`` cut to MAX_RAW_BYTES (what a dead letter keeps of it)."""
    return body if len(body) <= MAX_RAW_BYTES else body[:MAX_RAW_BYTES]


def as_bytes(body: object) -> bytes:
    """The bytes of a stored body, whatever type a foreign writer stored
    (text is UTF-8; a number or other value becomes its ``repr``)."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return repr(body).encode("utf-8", "backslashreplace")


def canonical_args(args: Any) -> dict[str, Any]:
    """Validate ``args`` and return the copy a worker will see.

    Raises EncodeError (naming the offending argument) for anything that is
    not a JSON object of JSON values; tuples become lists.
    """
    return sized_args(args)[0]


def sized_args(
    args: Any, *, max_bytes: int | None = None
) -> tuple[dict[str, Any], int]:
    """:func:`canonical_args`, and the length of their JSON text in
    characters. Arguments whose text alone passes ``max_bytes`` raise
    EncodeError before they are copied."""
    if args is None:
        return {}, 2
    if not isinstance(args, dict):
        raise EncodeError(
            f"task args must be a dict with str keys, got {type(args).__name__}"
        )
    text = dumps(args, what="args")
    if max_bytes is not None and len(text) > max_bytes:
        check_size(len(text.encode()), max_bytes, what="task args")
    result: dict[str, Any] = _plain_decoder.decode(text)
    return result, len(text)


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


#: Times are epoch seconds; anything beyond this is not a time (and would
#: overflow a float conversion or a backend's column).
_TIME_LIMIT = 1e13
#: ``attempt`` and ``max_retries`` fit a 32-bit signed column.
_COUNT_LIMIT = 2**31 - 1


def envelope_from_dict(data: Any) -> Envelope:
    """The envelope ``data`` describes, or DecodeError saying what is wrong.

    Every field is checked (types, priority 0..9, attempt >= 1, finite times,
    string headers) and so is the platform's meta (``unique_key`` a string,
    ``history`` a list of objects, ``canvas`` a valid frame stack, ...)."""
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
        and queue
        and type(priority) is int
        and 0 <= priority <= 9
        and type(attempt) is int
        and 1 <= attempt <= _COUNT_LIMIT
        and type(max_retries) is int
        and 0 <= max_retries <= _COUNT_LIMIT
        and (not_before is None or _is_time(not_before))
        and (expires is None or _is_time(expires))
        and _is_time(enqueued_at)
        and (not headers or all(type(v) is str for v in headers.values()))
    ):
        if meta:
            _check_meta(meta)
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
        raise DecodeError(f"unsupported envelope format version {version!r:.40}")
    if "id" not in data or "name" not in data:
        missing = "id" if "id" not in data else "name"
        raise DecodeError(f"envelope is missing the field {missing!r}")
    headers = _dict(headers, "headers")
    if not all(isinstance(v, str) for v in headers.values()):
        raise DecodeError("envelope field 'headers' must map strings to strings")
    meta = _dict(meta, "meta")
    _check_meta(meta)
    return Envelope(
        id=_str(ident, "id"),
        name=_str(name, "name"),
        args=_dict(args, "args"),
        headers=headers,
        queue=_str(queue, "queue"),
        priority=_int(priority, "priority", 0, 9),
        attempt=_int(attempt, "attempt", 1, _COUNT_LIMIT),
        max_retries=_int(max_retries, "max_retries", 0, _COUNT_LIMIT),
        not_before=_opt_time(not_before, "not_before"),
        enqueued_at=float(_opt_time(enqueued_at, "enqueued_at") or 0.0),
        expires=_opt_time(expires, "expires"),
        meta=meta,
    )


def _is_time(value: Any) -> bool:
    return type(value) in _NUMBER and -_TIME_LIMIT < value < _TIME_LIMIT


def _check_meta(meta: dict[str, Any]) -> None:
    """Raise DecodeError when a platform key of an envelope's meta has the
    wrong shape (user data under other keys is left alone)."""
    get = meta.get
    key = get("unique_key")
    if key is not None and not isinstance(key, str):
        raise DecodeError("envelope meta 'unique_key' must be a string")
    history = get("history")
    if history is not None and not (
        isinstance(history, list) and all(isinstance(h, dict) for h in history)
    ):
        raise DecodeError("envelope meta 'history' must be a list of objects")
    run_id = get("workflow_run")
    if run_id is not None and not isinstance(run_id, str):
        raise DecodeError("envelope meta 'workflow_run' must be a string")
    step = get("workflow_step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise DecodeError("envelope meta 'workflow_step' must be an integer")
    canvas = get(CANVAS_KEY)
    if canvas is not None:
        try:
            check_canvas_meta(canvas)
        except DecodeError as exc:
            raise DecodeError(f"envelope meta 'canvas' is invalid: {exc}") from None


_NUMBER = (int, float)


def encode_envelope(env: Envelope, *, max_bytes: int | None = None) -> bytes:
    """The message body of ``env``; EncodeError when it cannot be encoded or
    is larger than ``max_bytes``."""
    body = dumps(envelope_to_dict(env), what="envelope").encode()
    check_size(len(body), max_bytes, what=f"message of task {env.name!r}")
    return body


def decode_envelope(body: object) -> Envelope:
    """Decode a message body, whatever its type; raises DecodeError with the
    reason (and nothing else)."""
    try:
        data = loads(body)  # type: ignore[arg-type]
    except DecodeError as exc:
        raise DecodeError(f"undecodable message body: {exc}") from None
    return envelope_from_dict(data)


def guess_task_id(body: object) -> str:
    """The ``id`` field of a body that is not a valid envelope, when it has
    one, else ``""`` (for dead-lettering undecodable messages by id)."""
    try:
        data = loads(body)  # type: ignore[arg-type]
    except DecodeError:
        return ""
    ident = data.get("id") if isinstance(data, dict) else None
    return ident if isinstance(ident, str) else ""


def undecodable(body: object, exc: Exception) -> tuple[bytes, str, str]:
    """What a Delivery of an undecodable ``body`` carries: the body as bytes
    (cut to MAX_RAW_BYTES), the reason, and the task id when readable."""
    raw = as_bytes(body)
    reason = (
        str(exc) if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"
    )
    return clip_raw(raw), reason[:500], guess_task_id(raw)


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
        **(
            {"progress": result.progress.to_dict()}
            if result.progress is not None
            else {}
        ),
    }


def result_from_dict(data: Any) -> TaskResult:
    """The result ``data`` describes, or DecodeError saying what is wrong."""
    if not isinstance(data, dict):
        raise DecodeError(f"a result must be a JSON object, got {type(data).__name__}")
    task_id, state = data.get("task_id"), data.get("state")
    if not isinstance(task_id, str):
        raise DecodeError("result field 'task_id' must be a string")
    try:
        parsed = TaskState(state)  # type: ignore[arg-type]
    except ValueError:
        raise DecodeError(
            f"result field 'state' is not a task state: {state!r:.40}"
        ) from None
    error = data.get("error")
    attempt = data.get("attempt", 0)
    name, queue = data.get("name", ""), data.get("queue", "")
    updated_at = data.get("updated_at", 0.0)
    meta = data.get("meta") or {}
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise DecodeError("result field 'attempt' must be an integer")
    if not isinstance(name, str) or not isinstance(queue, str):
        raise DecodeError("result fields 'name' and 'queue' must be strings")
    if not _is_time(updated_at):
        raise DecodeError("result field 'updated_at' must be a time")
    if not isinstance(meta, dict):
        raise DecodeError("result field 'meta' must be an object")
    progress = data.get("progress")
    return TaskResult(
        task_id=task_id,
        state=parsed,
        value=data.get("value"),
        error=error_from_dict(error),
        attempt=attempt,
        name=name,
        queue=queue,
        updated_at=float(updated_at),
        meta=meta,
        progress=None if progress is None else Progress.from_dict(progress),
    )


def error_from_dict(data: Any) -> ErrorInfo | None:
    """An ErrorInfo from its dict form (None for null/empty); DecodeError
    when it is not an object of strings."""
    if not data:
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k, ""), str) for k in ("type", "message", "traceback")
    ):
        raise DecodeError("an error must be an object of strings")
    return ErrorInfo.from_dict(data)


def encode_result(result: TaskResult) -> bytes:
    return dumps(result_to_dict(result), what="result").encode()


def decode_result(body: object) -> TaskResult:
    """Decode a stored result; raises DecodeError (only) when it is invalid."""
    return result_from_dict(loads(body))  # type: ignore[arg-type]


def decode_object(body: object, *, what: str = "message") -> dict[str, Any]:
    """A JSON object (a broadcast, a stored record); DecodeError otherwise."""
    data = loads(body)  # type: ignore[arg-type]
    if not isinstance(data, dict):
        raise DecodeError(f"a {what} must be a JSON object, got {type(data).__name__}")
    return data


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise DecodeError(f"envelope field {field!r} must be a non-empty string")
    return value


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"envelope field {field!r} must be an integer")
    if not low <= value <= high:
        raise DecodeError(
            f"envelope field {field!r} must be from {low} to {high}, got {value!r:.40}"
        )
    return value


def _opt_time(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not _is_time(value):
        raise DecodeError(f"envelope field {field!r} must be a time (epoch seconds)")
    return float(value)


def _dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"envelope field {field!r} must be an object")
    return value


def worker_info_from(body: object) -> WorkerInfo:
    """A heartbeat record as stored by any backend (JSON of WorkerInfo's
    fields); DecodeError (only) when it is not one."""
    data = decode_object(body, what="heartbeat")
    try:
        queues = data.get("queues", ())
        meta = data.get("meta") or {}
        if not isinstance(queues, list | tuple) or not isinstance(meta, dict):
            raise TypeError("queues must be a list and meta an object")
        info = WorkerInfo(
            worker_id=_str(data.get("worker_id"), "worker_id"),
            hostname=str(data.get("hostname", "")),
            pid=_int(data.get("pid", 0), "pid", 0, 2**63),
            queues=tuple(str(q) for q in queues),
            concurrency=_int(data.get("concurrency", 0), "concurrency", 0, 2**31),
            started_at=_opt_time(data.get("started_at", 0.0), "started_at") or 0.0,
            last_seen=_opt_time(data.get("last_seen", 0.0), "last_seen") or 0.0,
            active=_int(data.get("active", 0), "active", 0, 2**31),
            processed=_int(data.get("processed", 0), "processed", 0, 2**63),
            meta=meta,
        )
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"stored heartbeat does not decode: {exc}") from None
    return info


def revocation_from(body: object, version: int) -> Revocation:
    """A revocation record stored as JSON; DecodeError (only) when it is
    not one."""
    data = decode_object(body, what="revocation")
    task_id, reason = data.get("task_id"), data.get("reason", "revoked")
    if not isinstance(task_id, str) or not isinstance(reason, str):
        raise DecodeError("stored revocation needs a task_id and a reason")
    return Revocation(
        task_id=task_id,
        terminate=data.get("terminate") is True,
        reason=reason,
        expires_at=_opt_time(data.get("expires_at"), "expires_at"),
        version=version,
    )


def readable(
    decode: Callable[[object], T], bodies: Iterable[object], what: str
) -> list[T]:
    """``decode`` of each of ``bodies`` that decodes; the others are skipped
    with a warning (one bad record never hides the rest)."""
    out: list[T] = []
    for body in bodies:
        try:
            out.append(decode(body))
        except DecodeError as exc:
            logger.warning("skipped a stored %s that does not decode: %s", what, exc)
    return out
