"""``Envelope.with_headers`` (the tracing hot path's copy) keeps every field."""

from __future__ import annotations

import attrs

from stem._envelope import Envelope


def test_with_headers_keeps_every_other_field() -> None:
    fields = {
        "id": "t1",
        "name": "n",
        "args": {"a": 1},
        "headers": {"x": "1"},
        "queue": "q",
        "priority": 7,
        "attempt": 3,
        "max_retries": 5,
        "not_before": 10.0,
        "enqueued_at": 9.0,
        "expires": 99.0,
        "meta": {"m": 2},
    }
    # A field added to Envelope must be added here and to with_headers.
    assert set(fields) == {f.name for f in attrs.fields(Envelope)}
    env = Envelope(**fields)  # type: ignore[arg-type]
    headers = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    assert env.with_headers(headers) == attrs.evolve(env, headers=headers)
