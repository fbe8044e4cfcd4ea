"""How one worker consumes: :class:`WorkerConfig`, declared once.

Every worker option is one attrs field here, with its default, its
validation, and (in its metadata) the environment variable and command-line
flag that set it. ``client.worker(...)`` takes the fields as keywords,
``stem.Settings.from_env`` reads the variables, ``stem worker`` generates
its options from the same fields, and ``stem.main`` passes the record on, so
an option is added, renamed or documented in this one place.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._codec import DEFAULT_MAX_MESSAGE_BYTES
from ._durations import check_seconds, seconds
from ._errors import ConfigError
from ._ids import new_id
from ._options import check_queue_name


@attrs.frozen(kw_only=True)
class OptionSpec:
    """How a field is spelled outside Python: ``env`` variable, CLI flags,
    help text, and ``parse`` turning their text into the field's value."""

    env: str | None
    flags: tuple[str, ...]
    help: str
    parse: Callable[[str], Any]
    metavar: str | None = None


def _spec(
    env: str | None,
    flags: tuple[str, ...],
    help: str,
    parse: Callable[[str], Any],
    metavar: str | None = None,
) -> dict[str, OptionSpec]:
    return {
        "stem": OptionSpec(
            env=env, flags=flags, help=help, parse=parse, metavar=metavar
        )
    }


# -- text parsers (environment and command line) ---------------------------


def parse_queues(text: str) -> tuple[str, ...]:
    """``"high,low"`` -> ``("high", "low")``; every name checked."""
    names = tuple(q.strip() for q in text.split(",") if q.strip())
    if not names:
        raise ValueError(f"names no queue: {text!r}")
    return tuple(check_queue_name(q) for q in names)


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, got {text!r}") from None


def _parse_seconds(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"must be seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number of seconds, got {text!r}")
    return value


#: How a worker's queues share its claims (``WorkerConfig.queue_order``).
QUEUE_ORDERS = ("round-robin", "priority")


def _parse_queue_order(text: str) -> str:
    order = text.strip().lower().replace("_", "-")
    if order not in QUEUE_ORDERS:
        raise ValueError(f"must be {' or '.join(QUEUE_ORDERS)}, got {text!r}")
    return order


def _check_queue_order(_inst: Any, _attr: Any, value: Any) -> None:
    if value not in QUEUE_ORDERS:
        raise ValueError(
            f"queue_order must be {' or '.join(map(repr, QUEUE_ORDERS))}, got {value!r}"
        )


def _check_host(value: object) -> str:
    """A host name or IP address to listen on (no scheme, port or space)."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 253
        or not all(c.isalnum() or c in ".-_:%" for c in value)
    ):
        raise ValueError(
            "metrics_host must be a host name or an IP address such as "
            f"127.0.0.1, 0.0.0.0 or ::1, got {value!r:.80}"
        )
    return value


def _parse_autoscale(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(",")
    if not sep:
        raise ValueError(f"must be MIN,MAX, got {text!r}")
    return (_parse_int(low), _parse_int(high))


# -- converters and validators ---------------------------------------------


def _to_queues(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return parse_queues(value)
    if not isinstance(value, list | tuple):
        raise TypeError(f"queues must be a list of queue names, got {value!r}")
    if not value:
        raise ValueError("a worker needs at least one queue")
    return tuple(check_queue_name(q) for q in value)


def _whole(low: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{attr.name} must be an int >= {low}, got {value!r}")

    return check


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0 seconds, got {value!r}")


def _to_autoscale(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"autoscale must be (min, max), got {value!r}")
    low, high = value
    if (
        isinstance(low, bool)
        or isinstance(high, bool)
        or not isinstance(low, int)
        or not isinstance(high, int)
        or not 1 <= low <= high
    ):
        raise ValueError(
            f"autoscale must be (min, max) with 1 <= min <= max, got {value!r}"
        )
    return (low, high)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """How one worker consumes. Durations are seconds (or ``timedelta``)."""

    queues: tuple[str, ...] = attrs.field(
        default=("default",),
        converter=_to_queues,
        metadata=_spec(
            "STEM_QUEUES",
            ("--queue", "-Q"),
            "Queue(s) to consume, in order; repeat the option or separate names "
            "with commas. --queue-order says how they share the claims.",
            parse_queues,
            "QUEUE[,QUEUE...]",
        ),
    )
    #: round-robin: each claim starts at the next queue (none starves);
    #: priority: a later queue is claimed from only when the earlier are empty
    queue_order: str = attrs.field(
        default="round-robin",
        validator=_check_queue_order,
        metadata=_spec(
            "STEM_QUEUE_ORDER",
            ("--queue-order",),
            "How the queues share the claims: round-robin (each claim starts at "
            "the next queue, so no queue starves) or priority (a later queue is "
            "claimed from only when the ones before it are empty; tasks already "
            "prefetched from it still run first: --prefetch 0 makes it strict).",
            _parse_queue_order,
            "round-robin|priority",
        ),
    )
    concurrency: int = attrs.field(
        default=10,
        validator=_whole(1),
        metadata=_spec(
            "STEM_CONCURRENCY",
            ("--concurrency", "-c"),
            "How many tasks run at once.",
            _parse_int,
            "N",
        ),
    )
    #: deliveries held beyond the running ones; -1: as many as the slots
    prefetch: int = attrs.field(
        default=-1,
        validator=_whole(-1),
        metadata=_spec(
            "STEM_PREFETCH",
            ("--prefetch",),
            "Tasks claimed ahead of free slots (-1: adaptive, about 20 ms of "
            "work: as many as the slots for long tasks, up to 200 for short "
            "ones). 0 holds only what runs.",
            _parse_int,
            "N",
        ),
    )
    grace_period: float = attrs.field(
        default=30.0,
        converter=seconds,
        validator=check_seconds,
        metadata=_spec(
            "STEM_GRACE_PERIOD",
            ("--grace-period",),
            "On shutdown, how long running tasks may take to finish before "
            "they are handed back to their queue.",
            _parse_seconds,
            "SECONDS",
        ),
    )
    #: (min, max) slots, driven by backlog and idleness; None: fixed slots
    autoscale: tuple[int, int] | None = attrs.field(
        default=None,
        converter=_to_autoscale,
        metadata=_spec(
            "STEM_AUTOSCALE",
            ("--autoscale",),
            "Grow and shrink the slots between MIN and MAX with the backlog "
            "(overrides --concurrency).",
            _parse_autoscale,
            "MIN,MAX",
        ),
    )
    #: the largest message (bytes) this worker runs; a larger one is
    #: dead-lettered (``message-too-large``)
    max_message_bytes: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_BYTES,
        validator=_whole(1),
        metadata=_spec(
            "STEM_MAX_MESSAGE_BYTES",
            ("--max-message-bytes",),
            "Largest message a worker runs (and a client enqueues); a larger "
            "one is dead-lettered as message-too-large. Default 8 MiB.",
            _parse_int,
            "BYTES",
        ),
    )
    #: the address the Prometheus endpoint (``--metrics-port``) listens on:
    #: loopback unless asked (the metrics name tasks and queues)
    metrics_host: str = attrs.field(
        default="127.0.0.1",
        validator=lambda _i, _a, v: _check_host(v),
        metadata=_spec(
            "STEM_METRICS_HOST",
            ("--metrics-host",),
            "Address the metrics endpoint listens on (with --metrics-port): "
            "127.0.0.1 by default; 0.0.0.0 or :: for every interface.",
            lambda text: _check_host(text.strip()),
            "HOST",
        ),
    )
    #: longest a claim waits for a message before it looks again (on a
    #: backend shared by processes; an in-process one waits until woken)
    claim_wait: float = attrs.field(
        default=1.0, converter=seconds, validator=[check_seconds, _positive]
    )
    heartbeat_interval: float = attrs.field(
        default=5.0,
        converter=seconds,
        validator=[check_seconds, _positive],
    )
    #: how often terminate-revocations are polled (a missed broadcast's fallback)
    revocation_poll: float = attrs.field(
        default=1.0,
        converter=seconds,
        validator=[check_seconds, _positive],
    )
    #: a rate-limited task waits in its slot at most this long for a token;
    #: longer waits give the delivery back (nack with that delay)
    rate_limit_hold: float = attrs.field(
        default=2.0,
        converter=seconds,
        validator=check_seconds,
    )
    #: an attempt's RUNNING record is stored once it has run this long; one
    #: that ends sooner is stored once, with its outcome (0: at its start)
    running_record_after: float = attrs.field(
        default=0.05,
        converter=seconds,
        validator=check_seconds,
    )
    #: a running task's progress reports are stored at most once per this
    #: many seconds per task (the last report always lands)
    progress_interval: float = attrs.field(
        default=1.0,
        converter=seconds,
        validator=[check_seconds, _positive],
    )
    autoscale_interval: float = attrs.field(
        default=1.0,
        converter=seconds,
        validator=[check_seconds, _positive],
    )
    #: seconds a slot surplus must stay idle before slots are retired
    autoscale_idle: float = attrs.field(
        default=5.0,
        converter=seconds,
        validator=[check_seconds, _positive],
    )
    worker_id: str = attrs.field(factory=_default_worker_id)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.worker_id, str) or not self.worker_id:
            raise ValueError(
                f"worker_id must be a non-empty string: {self.worker_id!r}"
            )
        if self.autoscale is not None:
            object.__setattr__(self, "concurrency", self.autoscale[1])

    # -- derived values (each resolved here, once) ---------------------------

    def capacity_for(self, slots: int, *, adaptive: int | None = None) -> int:
        """Deliveries held at most with ``slots`` slots: the running ones
        plus the prefetch. ``prefetch=-1`` (the default) adapts: it is the
        worker's ``adaptive`` depth (about 20 ms of expected work, from the
        slots up to 200; see ``stem/actors/_prefetch.py``), or as many as
        the slots when none is given."""
        if self.prefetch >= 0:
            return slots + self.prefetch
        return slots + (slots if adaptive is None else adaptive)

    @property
    def capacity(self) -> int:
        """Deliveries held at most (running + prefetched), at full size."""
        return self.capacity_for(self.concurrency)

    @property
    def min_slots(self) -> int:
        return self.concurrency if self.autoscale is None else self.autoscale[0]

    # -- outside Python ------------------------------------------------------

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> WorkerConfig:
        """The fields whose variables are set in ``environ`` (default
        ``os.environ``), then ``overrides``. Bad text raises ConfigError
        naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, spec in option_specs().items():
            text = env.get(spec.env or "", "").strip() if spec.env else ""
            if text:
                values[field] = parse_option(field, text, source=spec.env or field)
        values.update(overrides)
        return build_config(values)


def option_specs() -> dict[str, OptionSpec]:
    """The fields settable from the environment or the command line."""
    return {
        field.name: field.metadata["stem"]
        for field in attrs.fields(WorkerConfig)
        if "stem" in field.metadata
    }


def parse_option(field: str, text: str, *, source: str) -> Any:
    """Parse ``text`` for ``field``; ConfigError names ``source``."""
    spec = option_specs()[field]
    try:
        return spec.parse(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def build_config(values: Mapping[str, Any]) -> WorkerConfig:
    """``WorkerConfig(**values)`` with errors as ConfigError (one line)."""
    try:
        return WorkerConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"worker options: {exc}") from None
