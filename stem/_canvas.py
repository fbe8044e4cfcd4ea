"""Canvas: task calls composed into chains, groups and chords.

The domain half (no I/O): :func:`signature` and the graph types, their
validation, the JSON *spec* a submitted graph becomes (every node gets its id
up front), and the pure planning step that turns "start this node" into the
leaf calls to enqueue with the continuation each one carries in its envelope
meta. The runtime half (the CanvasCoordinator actor and the finish hook that
advances chains and joins chords) lives in ``stem/actors/_canvas.py``; the user's
entry point, ``client.canvas`` (:class:`stem.Canvas`, returning
:class:`stem.CanvasHandle` objects), in ``stem/_canvas_client.py``. See
docs/canvas.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from ._durations import to_epoch, to_seconds
from ._errors import DecodeError, EncodeError, TaskFailed
from ._handler import check_task_name
from ._ids import new_id
from ._options import check_priority, check_queue_name
from ._result import TaskResult

#: How long the join data of a group or chord (member results, the claim) and
#: the canvas records Stem writes itself are kept: independent of the members'
#: own ``result_ttl``, so a callback runs even when member results expire at once.
CANVAS_TTL = 7 * 86400.0

#: The envelope meta key holding a leaf's continuation (its frame stack).
META_KEY = "canvas"

SIGNATURE_OPTIONS = frozenset(
    {"queue", "priority", "countdown", "eta", "expires", "max_retries", "headers"}
)

Spec = dict[str, Any]
Frame = dict[str, Any]


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - SIGNATURE_OPTIONS)
    if unknown:
        hint = ""
        if {"task_id", "unique_key"} & set(unknown):
            hint = (
                " (canvas members get their ids from the canvas and cannot be unique)"
            )
        raise TypeError(
            f"unknown signature option(s) {', '.join(map(repr, unknown))}{hint}; "
            f"expected some of {', '.join(sorted(SIGNATURE_OPTIONS))}"
        )
    clean: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "queue":
            clean[key] = check_queue_name(value)
        elif key == "priority":
            clean[key] = check_priority(value)
        elif key == "countdown":
            clean[key] = to_seconds(value, name="countdown")
        elif key == "eta":
            clean[key] = to_epoch(value, name="eta")
        elif key == "expires":
            if isinstance(value, datetime):
                clean[key] = {"at": to_epoch(value, name="expires")}
            else:
                clean[key] = to_seconds(value, name="expires")
        elif key == "max_retries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"max_retries must be an int >= 0, got {value!r}")
            clean[key] = value
        elif key == "headers":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise EncodeError("headers must be a dict of str to str")
            clean[key] = dict(value)
    if "countdown" in clean and "eta" in clean:
        raise ValueError("pass countdown= or eta=, not both")
    return clean


def _check_args(value: object) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise EncodeError(
            f"task args must be a dict with str keys, got {type(value).__name__}"
        )
    return value


def _check_name(value: object) -> str:
    return check_task_name(value)


@attrs.frozen(kw_only=True)
class Signature:
    """One task call to compose: a name, its args and enqueue options.

    ``options`` hold normalised enqueue options (durations as seconds, ``eta``
    as epoch seconds). Build it with :func:`signature`.
    """

    name: str = attrs.field(converter=_check_name)
    args: dict[str, Any] | None = attrs.field(default=None, converter=_check_args)
    options: dict[str, Any] = attrs.field(factory=dict, converter=_check_options)

    def replace(self, **options: Any) -> Signature:
        """A copy with ``options`` merged over these (validated again)."""
        merged = {**self._raw_options(), **options}
        return Signature(name=self.name, args=self.args, options=merged)

    def _raw_options(self) -> dict[str, Any]:
        raw = dict(self.options)
        if "eta" in raw:
            raw["eta"] = datetime.fromtimestamp(raw["eta"], tz=UTC)
        expires = raw.get("expires")
        if isinstance(expires, dict):
            raw["expires"] = datetime.fromtimestamp(expires["at"], tz=UTC)
        return raw


def signature(
    name: str, args: dict[str, Any] | None = None, **options: Any
) -> Signature:
    """A task call to compose into a canvas (or a schedule entry).

    ``options`` are enqueue options: ``queue``, ``priority``, ``countdown``,
    ``eta``, ``expires``, ``max_retries``, ``headers``. Unknown option names
    and invalid values raise here; the args are checked when submitted.
    """
    return Signature(name=name, args=args, options=options)


def _members(kind: str, value: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(value, Signature | Chain | Group | Chord | str) or not isinstance(
        value, Iterable
    ):
        raise TypeError(f"a {kind} takes a list of signatures or canvases")
    items = tuple(value)
    if not items:
        raise ValueError(f"a {kind} needs at least one member")
    for item in items:
        if not isinstance(item, Signature | Chain | Group | Chord):
            raise TypeError(
                f"{kind} members must be stem.signature(...), chain, group or "
                f"chord, got {type(item).__name__}"
            )
    return items


def _chain_steps(value: Iterable[Any]) -> tuple[Any, ...]:
    return _members("chain", value)


def _group_members(value: Iterable[Any]) -> tuple[Any, ...]:
    return _members("group", value)


def _chord_members(value: Iterable[Any]) -> tuple[Any, ...]:
    return _members("chord", value)


@attrs.frozen(kw_only=True)
class Chain:
    """Steps run one after another; each gets the previous one's result."""

    steps: tuple[Signature | Chain | Group | Chord, ...] = attrs.field(
        converter=_chain_steps
    )


@attrs.frozen(kw_only=True)
class Group:
    """Members run in parallel; the result is the list of their results."""

    members: tuple[Signature | Chain | Group | Chord, ...] = attrs.field(
        converter=_group_members
    )


def _check_signature(kind: str) -> Any:
    def check(_: object, __: object, value: object) -> None:
        if value is not None and not isinstance(value, Signature):
            raise TypeError(f"{kind} must be a stem.signature(...), got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class Chord:
    """A group whose results (in member order) feed one callback."""

    members: tuple[Signature | Chain | Group | Chord, ...] = attrs.field(
        converter=_chord_members
    )
    callback: Signature = attrs.field(validator=_check_signature("callback"))
    allow_failures: bool = attrs.field(default=False)
    on_error: Signature | None = attrs.field(
        default=None, validator=_check_signature("on_error")
    )

    def __attrs_post_init__(self) -> None:
        if self.callback is None:
            raise TypeError("a chord needs callback=stem.signature(...)")
        if not isinstance(self.allow_failures, bool):
            raise TypeError("allow_failures must be True or False")


Canvasable = Signature | Chain | Group | Chord


def chain(steps: Iterable[Canvasable]) -> Chain:
    """Build (not submit) a chain; nest it or submit it with ``client.canvas``."""
    return Chain(steps=steps)


def group(members: Iterable[Canvasable]) -> Group:
    """Build (not submit) a group."""
    return Group(members=members)


def chord(
    members: Iterable[Canvasable],
    *,
    callback: Signature,
    allow_failures: bool = False,
    on_error: Signature | None = None,
) -> Chord:
    """Build (not submit) a chord."""
    return Chord(
        members=members,
        callback=callback,
        allow_failures=allow_failures,
        on_error=on_error,
    )


# -- specs: a submitted graph as JSON, every node with its id ----------------


def to_spec(node: Canvasable) -> Spec:
    """The JSON form of ``node`` with fresh ids for every node."""
    if isinstance(node, Signature):
        return _sig_spec(node)
    if isinstance(node, Chain):
        steps: list[Spec] = []
        for step in node.steps:
            spec = to_spec(step)
            # A chain inside a chain is the same as its steps spliced in.
            steps.extend(spec["steps"] if spec["t"] == "chain" else [spec])
        return {"t": "chain", "id": steps[-1]["id"], "steps": steps}
    if isinstance(node, Group):
        return {
            "t": "group",
            "id": new_id(),
            "members": [to_spec(m) for m in node.members],
        }
    callback = _sig_spec(node.callback)
    return {
        "t": "chord",
        "id": callback["id"],
        "members": [to_spec(m) for m in node.members],
        "cb": callback,
        "af": node.allow_failures,
        "err": _sig_spec(node.on_error) if node.on_error is not None else None,
    }


def _sig_spec(sig: Signature) -> Spec:
    return {
        "t": "sig",
        "id": new_id(),
        "name": sig.name,
        "args": sig.args,
        "opts": sig.options,
    }


def leaves(spec: Spec, *, callbacks: bool = True) -> list[Spec]:
    """Every signature spec in ``spec`` (with chord callbacks and error
    callbacks unless ``callbacks`` is False), in graph order."""
    kind = spec["t"]
    if kind == "sig":
        return [spec]
    children = spec["steps"] if kind == "chain" else spec["members"]
    out = [leaf for child in children for leaf in leaves(child, callbacks=callbacks)]
    if kind == "chord" and callbacks:
        out.append(spec["cb"])
        if spec["err"] is not None:
            out.append(spec["err"])
    return out


def node_ids(spec: Spec) -> list[str]:
    """Ids of every node that gets a result record (not error callbacks)."""
    kind = spec["t"]
    if kind == "sig":
        return [spec["id"]]
    children = spec["steps"] if kind == "chain" else spec["members"]
    out = [i for child in children for i in node_ids(child)]
    if kind == "group":
        out.append(spec["id"])
    elif kind == "chord":
        out.append(spec["cb"]["id"])
    return out


def member_ids(spec: Spec) -> list[str]:
    """The result ids of a node's direct members (a chain's steps)."""
    kind = spec["t"]
    if kind == "sig":
        return [spec["id"]]
    children = spec["steps"] if kind == "chain" else spec["members"]
    return [child["id"] for child in children]


@attrs.frozen(kw_only=True)
class Launch:
    """A leaf to enqueue now: its spec, its frame stack (innermost last) and
    the previous result it receives (``has_previous`` False: none)."""

    spec: Spec
    stack: tuple[Frame, ...]
    previous: Any = None
    has_previous: bool = False


def start(
    spec: Spec,
    stack: tuple[Frame, ...],
    previous: Any = None,
    *,
    has_previous: bool = False,
) -> list[Launch]:
    """The leaves to enqueue to start ``spec`` under ``stack``."""
    kind = spec["t"]
    if kind == "sig":
        return [
            Launch(spec=spec, stack=stack, previous=previous, has_previous=has_previous)
        ]
    if kind == "chain":
        steps = spec["steps"]
        inner = stack
        if len(steps) > 1:
            inner = (*stack, {"k": "chain", "rest": steps[1:]})
        return start(steps[0], inner, previous, has_previous=has_previous)
    members = spec["members"]
    out: list[Launch] = []
    for index, member in enumerate(members):
        if kind == "group":
            frame: Frame = {
                "k": "group",
                "id": spec["id"],
                "i": index,
                "n": len(members),
            }
        else:
            frame = {
                "k": "chord",
                "id": spec["id"],
                "i": index,
                "n": len(members),
                "cb": spec["cb"],
                "af": spec["af"],
                "err": spec["err"],
            }
        out.extend(start(member, (*stack, frame), previous, has_previous=has_previous))
    return out


def member_entry(result: TaskResult) -> dict[str, Any]:
    """How one member appears in an ``allow_failures`` chord callback's input."""
    return {
        "task_id": result.task_id,
        "state": result.state.value,
        "value": result.value if result.ok else None,
        "error": result.error.to_dict() if result.error is not None else None,
    }


Kind = Literal["chain", "group", "chord"]


# -- checking a continuation that arrives in a message -------------------------


def check_canvas_meta(value: object) -> None:
    """Raise DecodeError unless ``value`` is a well-formed ``meta["canvas"]``
    (``{"stack": [frame, ...]}`` with the frames and specs :func:`start`
    makes). A worker decoding a message calls it, so the finish hook never
    meets a frame it cannot follow."""
    if not isinstance(value, dict) or not isinstance(value.get("stack"), list):
        raise DecodeError("expected an object with a 'stack' list")
    for frame in value["stack"]:
        _check_frame(frame)


def _check_frame(frame: object) -> None:
    if not isinstance(frame, dict):
        raise DecodeError("a frame must be an object")
    kind = frame.get("k")
    if kind == "chain":
        rest = frame.get("rest")
        if not isinstance(rest, list) or not rest:
            raise DecodeError("a chain frame needs a non-empty 'rest' list")
        for spec in rest:
            _check_spec(spec)
        return
    if kind not in ("group", "chord"):
        raise DecodeError(f"unknown frame kind {kind!r:.40}")
    index, size = frame.get("i"), frame.get("n")
    if not (
        isinstance(frame.get("id"), str)
        and _is_int(index)
        and _is_int(size)
        and 0 <= index < size  # type: ignore[operator]
    ):
        raise DecodeError(f"a {kind} frame needs 'id', and 0 <= 'i' < 'n'")
    if kind == "chord":
        _check_chord_parts(frame)


def _check_chord_parts(node: dict[str, Any]) -> None:
    _check_spec(node.get("cb"), sig_only=True)
    if node.get("err") is not None:
        _check_spec(node["err"], sig_only=True)
    if not isinstance(node.get("af"), bool):
        raise DecodeError("a chord needs a boolean 'af'")


def _check_spec(spec: object, *, sig_only: bool = False) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
        raise DecodeError("a spec must be an object with a string 'id'")
    kind = spec.get("t")
    if kind == "sig":
        args, opts = spec.get("args"), spec.get("opts")
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise DecodeError("a signature spec needs a 'name'")
        if args is not None and not isinstance(args, dict):
            raise DecodeError("a signature's 'args' must be an object")
        if not isinstance(opts, dict) or not set(opts) <= SIGNATURE_OPTIONS:
            raise DecodeError("a signature's 'opts' must be an object of options")
        for key in ("eta", "countdown"):
            if key in opts and not _is_number(opts[key]):
                raise DecodeError(f"a signature's {key!r} must be a number")
        expires = opts.get("expires")
        if isinstance(expires, dict):
            expires = expires.get("at")
        if expires is not None and not _is_number(expires):
            raise DecodeError("a signature's 'expires' must be a number")
        return
    if sig_only or kind not in ("chain", "group", "chord"):
        raise DecodeError(f"unexpected spec kind {kind!r:.40}")
    children = spec.get("steps" if kind == "chain" else "members")
    if not isinstance(children, list) or not children:
        raise DecodeError(f"a {kind} spec needs members")
    for child in children:
        _check_spec(child)
    if kind == "chord":
        _check_chord_parts(spec)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -1e13 < value < 1e13
    )


def failure_of(result: TaskResult) -> TaskFailed:
    """The TaskFailed a handle raises for a failed or revoked canvas record."""
    failed_id = result.meta.get("failed_task_id") or result.task_id
    return TaskFailed(str(failed_id), result.error, state=result.state)


def enqueue_options(spec: Spec) -> dict[str, Any]:
    """A leaf spec's options as ``client.build_envelope`` keywords."""
    opts = dict(spec["opts"])
    if "eta" in opts:
        opts["eta"] = datetime.fromtimestamp(opts["eta"], tz=UTC)
    expires = opts.get("expires")
    if isinstance(expires, dict):
        opts["expires"] = datetime.fromtimestamp(expires["at"], tz=UTC)
    return opts


__all__ = [
    "CANVAS_TTL",
    "Chain",
    "Chord",
    "Group",
    "Launch",
    "Signature",
    "chain",
    "chord",
    "group",
    "signature",
    "start",
]
