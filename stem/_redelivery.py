"""The rules for putting a message back on a queue, shared by every Broker.

Pure functions: no I/O, no clock (the time of a change is passed in as
``at``). Each backend asks these what to store and stores it with its own
atomicity (no ``await`` in the middle, a transaction, a Lua script), so the
four agree by construction:

* ``nack(requeue=True)``: :func:`requeue_at` is when the message may be
  claimed again.
* ``dead_letter``: :func:`filed` is the entry stored (nothing of the message
  is lost when the caller leaves a field out).
* ``replay_dead``: :func:`select_for_replay` picks the entries,
  :func:`fresh_for_replay` is the envelope put back and :func:`due_at` when
  it may be claimed; the client's QUEUED record is :func:`replayed_result`.
* ``purge_dead``: :func:`select_for_purge` picks the entries.

The selections read entries oldest first, as the backend lists them, and
keep that order. Who filters where:

* memory and redis hold :class:`~stem.contracts.DeadLetter` records (redis
  reads the queue's whole dead-letter list) and pass them to the selections;
* sqlite reads ``(seq, task_id, dead_at, envelope)`` rows of the queue in
  one transaction and passes those (:class:`DeadRow`);
* postgres must lock only the rows it takes, so its ``pick_dead`` and
  ``purge_dead`` statements state :func:`wanted` and :func:`capped` in SQL
  (their comments point here); the rows it locked for a replay still go
  through :func:`select_for_replay`, which drops an envelope that no longer
  decodes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol, TypeVar

import attrs

from ._codec import (
    as_bytes,
    encode_envelope,
    envelope_from_dict,
    error_from_dict,
    loads,
)
from ._envelope import Envelope
from ._errors import DecodeError
from ._result import ErrorInfo, TaskResult
from ._states import TaskState
from .contracts import DeadLetter, Delivery


class DeadRow(Protocol):
    """What the selections read of a dead letter: a
    :class:`~stem.contracts.DeadLetter`, or a backend's row with the same
    fields (``envelope`` None: undecodable, never replayed)."""

    @property
    def task_id(self) -> str: ...

    @property
    def dead_at(self) -> float: ...

    @property
    def envelope(self) -> object: ...


Row = TypeVar("Row", bound=DeadRow)


# ----------------------------------------------------------- nack


def requeue_at(at: float, *, delay: float, envelope: Envelope | None) -> float:
    """When a message given back at ``at`` may be claimed again: after
    ``delay`` (a negative one counts as 0), and not before the ``not_before``
    of the ``envelope`` that replaces it (a retry's next attempt)."""
    ready = at + max(delay, 0.0)
    if envelope is not None and envelope.not_before is not None:
        ready = max(ready, envelope.not_before)
    return ready


# ----------------------------------------------------------- dead_letter


def filed(entry: DeadLetter, delivery: Delivery) -> DeadLetter:
    """The entry ``dead_letter`` stores for ``delivery``: ``entry``, under the
    delivery's queue when it names none, and with the message's body as
    ``raw`` when it carries neither envelope nor body."""
    queue = entry.queue or delivery.queue
    raw = entry.raw
    if entry.envelope is None and raw is None:
        if delivery.raw is not None:
            raw = delivery.raw
        elif delivery.envelope is not None:
            raw = encode_envelope(delivery.envelope)
    if queue == entry.queue and raw is entry.raw:
        return entry
    return attrs.evolve(entry, queue=queue, raw=raw)


# ----------------------------------------------------------- replay and purge


def capped(limit: int | None) -> int | None:
    """``limit`` as a count: None (no limit) or at least 0."""
    return None if limit is None else max(limit, 0)


def wanted(
    row: DeadRow, *, task_ids: Collection[str] | None, since: float | None
) -> bool:
    """``row`` is one of ``task_ids`` (None: any) and died at or after
    ``since`` (None: any time)."""
    return (task_ids is None or row.task_id in task_ids) and (
        since is None or row.dead_at >= since
    )


def _take(rows: Iterable[Row], limit: int | None) -> list[Row]:
    cap = capped(limit)
    out: list[Row] = []
    if cap == 0:
        return out
    for row in rows:
        out.append(row)
        if cap is not None and len(out) >= cap:
            break
    return out


def select_for_replay(
    rows: Iterable[Row],
    *,
    task_ids: Iterable[str] | None = None,
    limit: int | None = None,
    since: float | None = None,
) -> list[Row]:
    """The dead letters a replay takes from ``rows`` (oldest first): the
    decodable ones that are :func:`wanted`, one per task id (the newest: a
    task id is one task, so it goes back once), at most ``limit`` of them."""
    ids = None if task_ids is None else frozenset(task_ids)
    newest: dict[str, Row] = {}
    for row in rows:
        if row.envelope is not None and wanted(row, task_ids=ids, since=since):
            newest.pop(row.task_id, None)
            newest[row.task_id] = row
    return _take(newest.values(), limit)


def select_for_purge(
    rows: Iterable[Row], *, limit: int | None = None, since: float | None = None
) -> list[Row]:
    """The dead letters a purge deletes from ``rows`` (oldest first): those
    that died at or after ``since``, decodable or not, at most ``limit``."""
    return _take(
        (row for row in rows if wanted(row, task_ids=None, since=since)), limit
    )


def fresh_for_replay(
    envelope: Envelope, *, queue: str, at: float, delay: float = 0.0
) -> Envelope:
    """``envelope`` replayed at ``at`` from the dead letters of ``queue``: a
    new first attempt of the same task (same id, attempt 1,
    ``meta["history"]`` dropped) on ``queue``, enqueued at ``at`` and not
    before ``at + delay`` when ``delay`` is positive."""
    meta = {k: v for k, v in envelope.meta.items() if k != "history"}
    return attrs.evolve(
        envelope,
        queue=queue,
        attempt=1,
        not_before=at + delay if delay > 0 else None,
        enqueued_at=at,
        meta=meta,
    )


def due_at(envelope: Envelope, at: float) -> float:
    """When ``envelope``, stored at ``at``, may first be claimed."""
    if envelope.not_before is None:
        return at
    return max(envelope.not_before, at)


def replayed_result(task_id: str, *, name: str, queue: str, at: float) -> TaskResult:
    """The record a replayed task starts again with (it replaces the final
    FAILED one): QUEUED, attempt 1, marked ``meta["replayed"]``."""
    return TaskResult(
        task_id=task_id,
        state=TaskState.QUEUED,
        attempt=1,
        name=name,
        queue=queue,
        updated_at=at,
        meta={"replayed": True},
    )


# ----------------------------------------------------------- reading entries


def stored_dead(
    *,
    entry_id: object,
    task_id: object,
    name: object,
    queue: object,
    reason: object,
    error: object,
    attempts: object,
    dead_at: object,
    envelope: object,
    raw: object,
    history: object,
) -> DeadLetter:
    """A dead-letter entry as a backend reads it back, decoded totally.

    ``error``, ``envelope`` and ``history`` are the stored JSON (text or
    already decoded). A part that no longer decodes does not hide the
    entry: an envelope that fails is kept as ``raw`` (the entry can then be
    listed and purged, not replayed), an error becomes a DecodeError note,
    a history is dropped; other fields of the wrong type read as empty."""
    env: Envelope | None = None
    kept = as_bytes(raw) if raw is not None else None
    if envelope is not None:
        try:
            env = envelope_from_dict(
                envelope if isinstance(envelope, dict) else loads(envelope)  # type: ignore[arg-type]
            )
        except DecodeError:
            kept = kept if kept is not None else as_bytes(envelope)
    try:
        parsed = error if isinstance(error, dict) or error is None else loads(error)  # type: ignore[arg-type]
        info = error_from_dict(parsed)
    except DecodeError as exc:
        info = ErrorInfo(type="stem.DecodeError", message=f"stored error: {exc}")
    try:
        steps = history if isinstance(history, list) else loads(history or "[]")  # type: ignore[arg-type]
    except DecodeError:
        steps = []
    return DeadLetter(
        entry_id=str(entry_id),
        task_id=task_id if isinstance(task_id, str) else "",
        name=name if isinstance(name, str) else "",
        queue=queue if isinstance(queue, str) else "",
        reason=reason if isinstance(reason, str) else "",
        error=info,
        attempts=attempts if type(attempts) is int else 0,
        dead_at=float(dead_at) if type(dead_at) in (int, float) else 0.0,  # type: ignore[arg-type]
        envelope=env,
        raw=kept,
        history=tuple(h for h in steps if isinstance(h, dict))
        if isinstance(steps, list)
        else (),
    )
