"""The pure domain: options, codec, ids, retry policy, rate-limit specs, config."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stem
from stem._codec import (
    canonical_args,
    canonical_key,
    decode_envelope,
    decode_result,
    encode_envelope,
    encode_result,
)
from stem._config import Settings, load_app
from stem._durations import to_epoch
from stem._ids import new_id

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_is_exported_exactly_once() -> None:
    """stem/__init__.py re-exports each public name once, as `from ._x import N as N`."""
    tree = ast.parse((ROOT / "stem" / "__init__.py").read_text())
    names = [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for name in names:
        assert getattr(stem, name) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_limit": "100/x"}, "expected 'N/s', 'N/m' or 'N/h'"),
        ({"max_retries": -1}, "max_retries must be an int >= 0"),
        ({"priority": 10}, "priority must be from 0"),
        ({"queue": "has space"}, "invalid queue name"),
        ({"hard_time_limit": -1}, "hard_time_limit must be a finite number"),
        ({"soft_time_limit": 5, "hard_time_limit": 1}, "must not exceed"),
        ({"visibility_timeout": 0}, "visibility_timeout must be > 0"),
        ({"rate_limit_scope": "planet"}, "rate_limit_scope"),
        ({"rate_limit_burst": 3}, "rate_limit_burst needs a rate_limit"),
        ({"execution": "gpu"}, "execution must be"),
    ],
)
def test_task_options_reject_bad_values_with_a_clear_message(
    kwargs: dict[str, Any], message: str
) -> None:
    """TaskOptions validates at construction and says what was expected."""
    with pytest.raises(ValueError, match=message):
        stem.TaskOptions(**kwargs)


def test_task_options_accept_timedelta_and_apply_burst() -> None:
    """Durations accept timedelta; rate_limit_burst sets the bucket size."""
    opts = stem.TaskOptions(
        soft_time_limit=timedelta(seconds=3),
        rate_limit="5/s",
        rate_limit_burst=4,
        unique_for=timedelta(minutes=1),
    )
    assert opts.soft_time_limit == 3.0
    assert opts.rate_limit is not None
    assert opts.rate_limit.interval == pytest.approx(0.2)
    assert opts.rate_limit.burst == 4
    assert opts.unique is True and opts.unique_for == 60.0


@pytest.mark.parametrize(
    ("spec", "per_second"),
    [("5/s", 5.0), ("100/m", 100 / 60), ("36/h", 0.01), ("5/10s", 0.5)],
)
def test_rate_limit_specs(spec: str, per_second: float) -> None:
    """Rate-limit strings parse to tokens per second."""
    assert stem.RateLimit.parse(spec).per_second == pytest.approx(per_second)


def test_task_decorator_rejects_unknown_options() -> None:
    """@stem.task names unknown options instead of ignoring them."""
    with pytest.raises(TypeError, match="unknown task option"):
        stem.task("x", retries=3)


def test_app_rejects_duplicate_names_and_classes() -> None:
    """Registering two tasks under one name, or a class instead of an instance, fails."""

    @stem.task("dup")
    async def one(ctx: Any, args: Any) -> None: ...

    @stem.task("dup")
    async def two(ctx: Any, args: Any) -> None: ...

    with pytest.raises(stem.DuplicateTask):
        stem.App([one, two])

    class Handler(stem.TaskHandler[None]):
        name = "h"

    with pytest.raises(TypeError, match="instance"):
        stem.App([Handler])  # type: ignore[list-item]


def test_canonical_args_names_the_bad_argument() -> None:
    """Encoding errors name the offending path; tuples become lists."""
    with pytest.raises(stem.EncodeError, match=r"args\['a'\]\[1\]\['b'\]"):
        canonical_args({"a": [1, {"b": {1, 2}}]})
    with pytest.raises(stem.EncodeError, match="non-finite"):
        canonical_args({"x": float("nan")})
    assert canonical_args({"t": (1, 2)}) == {"t": [1, 2]}
    with pytest.raises(stem.EncodeError, match="dict"):
        canonical_args([1, 2])


def test_canonical_key_ignores_key_order() -> None:
    """The uniqueness key of equal args is equal whatever the key order."""
    assert canonical_key("t", {"a": 1, "b": 2}) == canonical_key("t", {"b": 2, "a": 1})
    assert canonical_key("t", {"a": 1}) != canonical_key("u", {"a": 1})


def test_envelope_and_result_round_trip() -> None:
    """Envelopes and results survive encode/decode unchanged."""
    env = stem.Envelope(
        id=new_id(),
        name="n",
        args={"a": [1, "x"]},
        headers={"traceparent": "00-abc"},
        queue="q",
        priority=3,
        attempt=2,
        max_retries=4,
        not_before=12.5,
        enqueued_at=10.0,
        expires=99.0,
        meta={"history": [{"attempt": 1}]},
    )
    assert decode_envelope(encode_envelope(env)) == env
    result = stem.TaskResult(
        task_id=env.id,
        state=stem.TaskState.FAILED,
        error=stem.ErrorInfo(type="KeyError", message="k", traceback="tb"),
        attempt=2,
        name="n",
        queue="q",
        updated_at=1.0,
        meta={"reason": "x"},
    )
    assert decode_result(encode_result(result)) == result


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"name": "x"}', "missing the field 'id'"),
        (b'{"id": "1", "name": "x", "attempt": "one"}', "'attempt' must be an integer"),
        (b'{"v": 99, "id": "1", "name": "x"}', "unsupported envelope format"),
    ],
)
def test_decode_errors_say_why(body: bytes, reason: str) -> None:
    """An undecodable body raises DecodeError with the reason."""
    with pytest.raises(stem.DecodeError, match=reason):
        decode_envelope(body)


def test_ids_are_time_ordered_uuid7() -> None:
    """new_id() gives unique UUIDv7 strings that sort by creation order."""
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:10])


def test_naive_datetimes_are_refused() -> None:
    """eta/at datetimes must be timezone-aware."""
    with pytest.raises(ValueError, match="timezone-aware"):
        to_epoch(datetime(2026, 1, 1), name="eta")
    assert to_epoch(datetime(1970, 1, 1, tzinfo=UTC), name="eta") == 0.0


@given(
    base=st.floats(0.001, 10),
    cap=st.floats(10, 1000),
    attempt=st.integers(1, 10_000),
    draw=st.floats(0, 1),
)
def test_retry_delay_is_within_zero_and_cap(
    base: float, cap: float, attempt: int, draw: float
) -> None:
    """Every retry delay lies in [0, cap] and under the exponential bound."""
    policy = stem.RetryPolicy(base=base, cap=cap)
    delay = policy.delay(attempt, rng=lambda: draw)
    assert 0 <= delay <= cap
    assert delay <= policy.bound(attempt)


def test_retry_policy_filters_exceptions() -> None:
    """retry_on / dont_retry_on decide which errors are retried."""
    policy = stem.RetryPolicy(retry_on=(OSError,), dont_retry_on=(FileNotFoundError,))
    assert policy.should_retry(ConnectionError())
    assert not policy.should_retry(FileNotFoundError())
    assert not policy.should_retry(ValueError())
    assert stem.RetryPolicy(jitter=False).delay(3) == 4.0


def test_settings_from_env_validate() -> None:
    """Settings read STEM_* variables and name a bad one in the error."""
    settings = Settings.from_env(
        {
            "STEM_APP": "a.b:c",
            "STEM_BROKER_URL": "memory://",
            "STEM_QUEUES": "default, mail",
            "STEM_CONCURRENCY": "4",
        }
    )
    assert settings.queues == ("default", "mail")
    assert settings.concurrency == 4
    with pytest.raises(stem.ConfigError, match="STEM_CONCURRENCY"):
        Settings.from_env({"STEM_CONCURRENCY": "many"})
    with pytest.raises(stem.ConfigError, match="STEM_QUEUES"):
        Settings.from_env({"STEM_QUEUES": "bad queue"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "STEM_APP is not set"),
        ("nocolon", "must have the form"),
        ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
        ("tests.unit.test_domain:missing", "has no attribute 'missing'"),
        ("tests.unit.test_domain:ROOT", "expected a stem.App"),
    ],
)
def test_load_app_errors_name_the_variable(spec: str | None, message: str) -> None:
    """A missing or wrong STEM_APP gives one clear line naming it and the import."""
    with pytest.raises(stem.ConfigError, match=message) as info:
        load_app(spec)
    assert "\n" not in str(info.value)


demo_tasks = [stem.task("listed")(lambda ctx, args: None)]


def test_load_app_accepts_a_list_of_tasks() -> None:
    """STEM_APP may name a list of tasks."""
    app = load_app("tests.unit.test_domain:demo_tasks")
    assert list(app.tasks) == ["listed"]


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ("", "stem: STEM_APP is not set"),
        ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_main_with_bad_stem_app_prints_one_line(app: str, expected: str) -> None:
    """trio.run(stem.main) with a missing or wrong STEM_APP prints one line, exit 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("STEM_")}
    env["STEM_APP"] = app
    proc = subprocess.run(
        [sys.executable, "-c", "import trio, stem; trio.run(stem.main)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert "Traceback" not in proc.stderr


def test_metrics_port_zero_means_any_free_port() -> None:
    """STEM_METRICS_PORT=0 is accepted (a free port); out-of-range ports are not."""
    assert Settings.from_env({"STEM_METRICS_PORT": "0"}).metrics_port == 0
    with pytest.raises(stem.ConfigError, match="STEM_METRICS_PORT"):
        Settings.from_env({"STEM_METRICS_PORT": "70000"})


def test_stem_worker_reads_the_other_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`stem worker` takes STEM_BEAT (and the rest) from the environment."""
    from click.testing import CliRunner

    import stem._main
    from stem.cli import main as cli

    seen: list[Settings] = []

    async def fake_serve(settings: Settings, app: Any, **kw: Any) -> None:
        seen.append(settings)

    monkeypatch.setattr(stem._main, "serve", fake_serve)
    result = CliRunner().invoke(
        cli,
        ["worker", "--app", "tests.unit.test_domain:demo_tasks", "--url", "memory://"],
        env={"STEM_BEAT": "off", "STEM_PREFETCH": "50"},
    )
    assert result.exit_code == 0, result.output
    assert seen[0].beat == "off"
    assert seen[0].prefetch == 50
