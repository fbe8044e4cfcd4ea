"""Fuzzing every decoder with hypothesis: any input decodes to a valid value
or raises ``stem.DecodeError``, never anything else (no KeyError, TypeError,
RecursionError, OverflowError...); and what decodes, encodes again."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stem
from stem import _codec, _redelivery, _wfcodec
from stem._canvas import check_canvas_meta, start, to_spec
from stem._errors import DecodeError
from stem.actors._control import parse_request
from stem.adapters.postgres._broker import PostgresBroker
from stem.adapters.postgres._schedules import _record as pg_schedule
from stem.adapters.redis._broker import RedisBroker, _decode_dead
from stem.adapters.redis._results import parse_result
from stem.adapters.redis._schedules import _record as redis_schedule
from stem.adapters.redis._stores import revocation_record
from stem.adapters.sqlite._broker import _delivery as sqlite_delivery
from stem.adapters.sqlite._schedules import _record as sqlite_schedule
from stem.contracts import Delivery

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
#: What a column or a driver may hand back: any of these types.
column_values = scalars | st.binary(max_size=40) | json_values


def as_json(value: Any) -> bytes:
    """JSON text as a foreign producer might write it (NaN and Infinity
    included, which Python's json emits)."""
    return json.dumps(value, allow_nan=True).encode()


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


bodies = (
    st.binary(max_size=200)
    | json_values.map(as_json)
    | st.integers(min_value=90, max_value=3000).map(deep)
    | st.sampled_from([b"NaN", b"-Infinity", b"1e999", b"1" * 5000, b"\xff", b""])
)


def valid_envelope() -> dict[str, Any]:
    return _codec.envelope_to_dict(
        stem.Envelope(
            id="t-1",
            name="task",
            args={"a": [1, 2.5, "x"]},
            headers={"h": "v"},
            priority=3,
            meta={
                "unique_key": "k",
                "history": [{"attempt": 1}],
                "canvas": {"stack": _stack()},
                "workflow_run": "r",
                "workflow_step": 2,
            },
        )
    )


def _stack() -> list[Any]:
    chord = stem.chord(
        [stem.signature("a", {"x": 1}), stem.chain([stem.signature("b")] * 2)],
        callback=stem.signature("cb"),
    )
    return list(start(to_spec(chord), ())[0].stack)


def mutated(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with fields replaced by anything (or removed), including
    inside ``meta``."""

    def apply(changes: list[tuple[str, Any, bool]]) -> dict[str, Any]:
        data = json.loads(json.dumps(valid))
        for key, value, remove in changes:
            target = data
            if key.startswith("meta.") and isinstance(data.get("meta"), dict):
                target, key = data["meta"], key[5:]
            if remove:
                target.pop(key, None)
            else:
                target[key] = value
        return data

    keys = [*valid, *(f"meta.{k}" for k in valid.get("meta", {}))]
    change = st.tuples(st.sampled_from(keys), json_values, st.booleans())
    return st.lists(change, min_size=1, max_size=3).map(apply)


def decodes_or_refuses(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DecodeError:
        return None


# -- the JSON reader and message bodies ---------------------------------------


@FUZZ
@given(body=bodies | column_values)
def test_loads_returns_json_or_decode_error(body: Any) -> None:
    """Any input to the codec's reader gives a finite, bounded JSON value or
    DecodeError."""
    value = decodes_or_refuses(_codec.loads, body)
    if value is not None:
        assert _codec.depth(value) <= _codec.MAX_DEPTH
        _codec.dumps(value)  # what was read can be written back


@FUZZ
@given(body=bodies | column_values | mutated(valid_envelope()).map(as_json))
def test_envelope_decoding_is_total(body: Any) -> None:
    """A message body decodes to an envelope that round-trips, or raises
    DecodeError."""
    env = decodes_or_refuses(_codec.decode_envelope, body)
    if env is None:
        return
    assert 0 <= env.priority <= 9
    assert env.attempt >= 1
    assert all(isinstance(v, str) for v in env.headers.values())
    assert _codec.decode_envelope(_codec.encode_envelope(env)) == env


@FUZZ
@given(data=mutated(valid_envelope()))
def test_envelope_fields_and_meta_are_checked(data: dict[str, Any]) -> None:
    """An envelope dict with any field or meta key replaced decodes to a valid
    envelope (unique_key a string, a canvas the hook can follow) or raises
    DecodeError."""
    env = decodes_or_refuses(_codec.envelope_from_dict, data)
    if env is None:
        return
    key = env.meta.get("unique_key")
    assert key is None or isinstance(key, str)
    if env.meta.get("canvas") is not None:
        check_canvas_meta(env.meta["canvas"])
    for number in (env.not_before, env.expires, env.enqueued_at):
        assert number is None or math.isfinite(number)


@FUZZ
@given(value=json_values | mutated({"stack": _stack()}))
def test_canvas_meta_check_is_total(value: Any) -> None:
    """check_canvas_meta accepts a well-formed frame stack and raises
    DecodeError for anything else."""
    decodes_or_refuses(check_canvas_meta, value)


@FUZZ
@given(
    body=bodies
    | column_values
    | mutated(
        _codec.result_to_dict(
            stem.TaskResult(
                task_id="t",
                state=stem.TaskState.FAILED,
                error=stem.ErrorInfo(type="E", message="m"),
                meta={"x": 1},
            )
        )
    ).map(as_json)
)
def test_result_decoding_is_total(body: Any) -> None:
    """A stored result decodes to a TaskResult that round-trips, or raises
    DecodeError."""
    result = decodes_or_refuses(_codec.decode_result, body)
    if result is not None:
        assert _codec.decode_result(_codec.encode_result(result)) == result


@FUZZ
@given(
    head=st.tuples(
        st.sampled_from([b"T", b"N", b"X", b""]), st.binary(max_size=12)
    ).map(b"".join),
    body=bodies,
    newline=st.booleans(),
)
def test_redis_result_value_decoding_is_total(
    head: bytes, body: bytes, newline: bool
) -> None:
    """A Redis result value (flag, expiry, newline, JSON) of any content reads
    back as a result, as expired (None), or raises DecodeError."""
    value = head + (b"\n" if newline else b"") + body
    decodes_or_refuses(parse_result, value, 0.0)


# -- broadcasts and control requests ----------------------------------------

control_requests = mutated(
    {
        "kind": "stem.control",
        "request_id": "r-1",
        "command": "pause",
        "args": {"queue": "default"},
        "destination": ["w-1"],
    }
)


@FUZZ
@given(body=bodies | control_requests.map(as_json))
def test_broadcast_and_control_decoding_is_total(body: bytes) -> None:
    """A broadcast body is a JSON object or DecodeError; a control request is
    parsed into well-typed fields or dropped (None), never an error."""
    message = decodes_or_refuses(_codec.decode_object, body)
    if message is None:
        return
    request = parse_request(message)
    if request is not None:
        command, request_id, args, dest = request
        assert isinstance(command, str)
        assert isinstance(request_id, str)
        assert isinstance(args, dict)
        assert dest is None or all(isinstance(w, str) for w in dest)


# -- what each backend's claim reads ----------------------------------------


def _check_delivery(d: Delivery) -> None:
    assert isinstance(d.task_id, str)
    assert d.delivery_count >= 0
    if d.envelope is None:
        assert d.decode_error
        assert isinstance(d.raw, bytes)
        assert len(d.raw) <= _codec.MAX_RAW_BYTES


@FUZZ
@given(
    task_id=column_values,
    count=column_values,
    body=bodies | column_values | mutated(valid_envelope()).map(as_json),
)
def test_sqlite_claimed_row_never_fails(task_id: Any, count: Any, body: Any) -> None:
    """A claimed SQLite row with any column types becomes a delivery."""
    _check_delivery(sqlite_delivery((1, task_id, count, body), "default", "tok", 1.0))


stream_values = st.none() | st.binary(max_size=12) | st.integers() | st.text(max_size=8)


@FUZZ
@given(
    prior=stream_values,
    count=st.integers(min_value=1, max_value=9).map(str),
    body=bodies | stream_values | mutated(valid_envelope()).map(as_json),
)
def test_redis_stream_entry_never_fails(prior: Any, count: str, body: Any) -> None:
    """A stream entry with any ``n`` field and any body (or none) becomes a
    delivery."""
    row = [b"0", b"1-0", prior, count, body]
    _check_delivery(RedisBroker._delivery("default", "c", 1.0, row, at=0.0))


@FUZZ
@given(
    body=bodies | mutated(valid_envelope()).map(as_json),
    task_id=stream_values,
    record=stream_values,
)
def test_redis_claim_row_with_any_revocation_never_fails(
    body: Any, task_id: Any, record: Any
) -> None:
    """A claimed or handed row whose revocation fields (the id the script
    read, the record) hold anything becomes a delivery; an unreadable
    record leaves it unchecked."""
    row = [b"0", b"1-0", b"0", "1", body, task_id, record]
    delivery = RedisBroker._delivery("default", "c", 1.0, row, at=0.0)
    _check_delivery(delivery)
    if delivery.revocation_checked:
        assert delivery.envelope is not None


@FUZZ
@given(body=bodies | mutated(valid_envelope()).map(as_json), task_id=st.text())
def test_postgres_claimed_row_never_fails(body: bytes, task_id: str) -> None:
    """A claimed Postgres row with any body becomes a delivery."""
    # id, priority, ready_at, queue, task_id, delivery count, body, then the
    # revocation columns (terminate, reason, expires_at, version: none), token
    rows = [(1, 0, 0.0, "default", task_id, 1, body, None, None, None, None, "tok")]
    [d] = PostgresBroker._deliveries(None, ["default"], rows, 30.0, 0.0)  # type: ignore[arg-type]
    _check_delivery(d)


# -- rows read back: dead letters, workflows, schedules -----------------------


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {
            k: column_values | json_values.map(as_json)
            for k in (
                "task_id",
                "name",
                "queue",
                "reason",
                "error",
                "attempts",
                "dead_at",
                "envelope",
                "raw",
                "history",
            )
        }
    )
)
def test_stored_dead_letter_always_reads_back(fields: dict[str, Any]) -> None:
    """A dead-letter row of any content reads back as an entry (what no
    longer decodes is kept as raw, never raised)."""
    entry = _redelivery.stored_dead(entry_id=1, **fields)
    assert entry.entry_id == "1"
    assert isinstance(entry.task_id, str)


@FUZZ
@given(member=st.binary(max_size=10), value=bodies)
def test_redis_dead_letter_value_always_reads_back(member: bytes, value: bytes) -> None:
    """A Redis dead-letter hash value of any content reads back as an entry."""
    entry = _decode_dead(member, value)
    assert isinstance(entry.entry_id, str)


run_dict = _wfcodec.run_to_dict(
    stem.contracts.WorkflowRun(run_id="r", workflow="w", due_at=1.0, parent_id="p")
)
step_dict = _wfcodec.step_to_dict(
    stem.contracts.WorkflowStep(run_id="r", index=0, kind="sleep", name="s")
)


@FUZZ
@given(body=bodies | mutated(run_dict).map(as_json))
def test_workflow_run_decoding_is_total(body: bytes) -> None:
    """A stored workflow run decodes to a run that round-trips, or raises
    DecodeError."""
    run = decodes_or_refuses(_wfcodec.decode_run, body)
    if run is not None:
        assert _wfcodec.decode_run(_wfcodec.encode_run(run)) == run


@FUZZ
@given(body=bodies | mutated(step_dict).map(as_json))
def test_workflow_step_decoding_is_total(body: bytes) -> None:
    """A stored workflow step decodes to a step that round-trips, or raises
    DecodeError."""
    step = decodes_or_refuses(_wfcodec.decode_step, body)
    if step is not None:
        assert _wfcodec.decode_step(_wfcodec.encode_step(step)) == step


schedule_columns = st.lists(column_values, min_size=10, max_size=10)


@FUZZ
@given(row=schedule_columns)
def test_schedule_rows_decode_or_refuse(row: list[Any]) -> None:
    """A schedule row of any content (SQLite, Postgres, Redis) reads back as
    a record or raises DecodeError."""
    names = [
        "name",
        "definition",
        "enabled",
        "version",
        "created_at",
        "changed_at",
        "last_fire",
        "last_fired_at",
        "fire_count",
        "fired_by",
    ]
    decodes_or_refuses(sqlite_schedule, row)
    decodes_or_refuses(pg_schedule, dict(zip(names, row, strict=True)))
    fields = {
        name.encode(): value if isinstance(value, bytes) else str(value).encode()
        for name, value in zip(names, row, strict=True)
        if value is not None
    }
    decodes_or_refuses(redis_schedule, "entry", fields)


heartbeat = {
    "worker_id": "w",
    "hostname": "h",
    "pid": 1,
    "queues": ["default"],
    "concurrency": 4,
    "started_at": 1.0,
    "last_seen": 2.0,
    "active": 0,
    "processed": 3,
    "meta": {},
}


@FUZZ
@given(body=bodies | mutated(heartbeat).map(as_json))
def test_heartbeat_records_decode_or_refuse(body: bytes) -> None:
    """A stored heartbeat (any backend) reads back as a WorkerInfo or raises
    DecodeError, and a listing skips it instead of failing."""
    decodes_or_refuses(_codec.worker_info_from, body)
    assert len(_codec.readable(_codec.worker_info_from, [body], "heartbeat")) <= 1


@FUZZ
@given(
    version=st.binary(max_size=6),
    body=bodies
    | mutated(
        {"task_id": "t", "terminate": True, "reason": "r", "expires_at": None}
    ).map(as_json),
)
def test_redis_revocation_records_decode_or_refuse(version: bytes, body: bytes) -> None:
    """A Redis revocation value reads back as a Revocation or raises
    DecodeError."""
    decodes_or_refuses(revocation_record, version + b"\n" + body)
