"""The adapter contracts: what a backend must provide.

A backend is a bundle (:class:`Backend`) of stores, each a small
``typing.Protocol``. The policy (retries, routing, result waiting, canvas,
workflows) lives above these interfaces, once; an adapter only stores and
moves data, atomically where the contract says so.

Conventions every implementation follows:

* Times are Unix epoch seconds as float, read from ``stem._clock.now()``
  (Trio's clock, so ``MockClock`` drives leases and delays). Adapters never
  use the server's clock for deadlines unless they declare
  ``Capabilities.server_clock``.
* Every method is atomic with respect to cancellation unless it says
  otherwise: when it is cancelled the change is either made or not.
* Driver errors are mapped to :class:`stem.BrokerUnavailable` at the boundary.
* :mod:`stem.testing` holds the one suite every backend passes (run over the
  built-in backends by ``tests/contract``).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

import attrs
import trio

from ._envelope import Envelope
from ._errors import StemError
from ._result import ErrorInfo, TaskResult

# --------------------------------------------------------------------------
# Data records shared by the contracts


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a backend can do; the contract suite skips (with the reason) what
    a backend declares it cannot."""

    name: str
    #: Several processes can share the backend (memory: no).
    cross_process: bool = True
    #: Data survives a restart of the process / server.
    persistent: bool = True
    #: Lease deadlines follow the server's clock, not Trio's (tests must wait
    #: in real time rather than jump a MockClock).
    server_clock: bool = False
    #: Broadcast (remote control fan-out) is supported.
    broadcast: bool = True
    #: Global (shared) rate limits are supported.
    global_rate_limits: bool = True


@attrs.frozen(kw_only=True)
class Delivery:
    """One leased message handed to a consumer.

    ``receipt`` identifies this lease, uniquely across every queue of the
    backend (a worker keys the leases it holds by receipt). A receipt stays
    valid until the message is claimed again (even past its lease deadline);
    after that, ack/nack/extend/dead_letter with it change nothing and report
    False.
    ``envelope`` is None when the body could not be decoded; then ``raw`` holds
    the body, ``decode_error`` the reason, and ``task_id`` is the body's
    ``id`` when readable, else ``""``. ``delivery_count`` counts claims of the
    message, carried across ``nack(requeue=True)``. ``size`` is the stored
    body's length in bytes (0: not known, e.g. the memory backend), which a
    worker compares with its ``max_message_bytes``.

    Claims never fail on a message's content: whatever a foreign writer put
    in a queue (not JSON, the wrong JSON, the wrong column type) is handed
    out as an undecodable delivery, so the worker dead-letters it.

    ``revocation_checked`` says the backend looked the task id up in the
    revocation store within the claim itself (one round trip saved);
    ``revocation`` is then the live revocation found, or None. Unchecked
    deliveries are looked up by the worker with ``RevocationStore.is_revoked``.
    """

    receipt: str
    queue: str
    task_id: str
    envelope: Envelope | None
    lease_until: float
    delivery_count: int = 1
    raw: bytes | None = None
    decode_error: str | None = None
    size: int = 0
    revocation_checked: bool = False
    revocation: Revocation | None = None


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A message that will not be tried again without a person deciding so.

    ``reason`` is one of ``max-retries-exhausted``, ``non-retryable-error``,
    ``unregistered-task``, ``decode-error``, ``message-too-large``,
    ``write-error``, ``time-limit``, ``signature-invalid``, ``rejected``.
    ``envelope`` is None for undecodable messages (``raw`` has the body, cut
    to 64 KiB). ``history`` lists one error dict per failed attempt.
    ``entry_id`` is the entry's own key, set by the backend when it stores
    the entry (``""`` before): entries are never keyed by ``task_id``, which a
    poison message may leave empty or forge.
    """

    task_id: str
    name: str
    queue: str
    reason: str
    error: ErrorInfo | None
    attempts: int
    dead_at: float
    envelope: Envelope | None
    raw: bytes | None = None
    history: tuple[dict[str, Any], ...] = ()
    entry_id: str = ""


@attrs.frozen(kw_only=True)
class QueueStats:
    """Counts for one queue at one moment."""

    queue: str
    pending: int  # ready to be claimed now
    delayed: int  # not_before in the future
    in_flight: int  # leased to a consumer
    dead: int  # in the dead-letter queue


@attrs.frozen(kw_only=True)
class WorkerInfo:
    """A live worker as seen through its heartbeat."""

    worker_id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float
    active: int = 0
    processed: int = 0
    meta: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ScheduleRecord:
    """One schedule entry as stored (see :class:`ScheduleStore`).

    ``definition`` is ``ScheduleEntry.to_dict()``. The store sets ``version``
    (1 on add, +1 on every change, fires included), ``created_at`` and
    ``changed_at`` (when the definition or ``enabled`` last changed: the
    baseline after which ticks count). ``last_fire`` is the tick (nominal
    time) of the last recorded fire, ``last_fired_at`` when it was recorded,
    ``fired_by`` the beat instance that recorded it.
    """

    name: str
    definition: Mapping[str, Any]
    enabled: bool = True
    version: int = 0
    created_at: float = 0.0
    changed_at: float = 0.0
    last_fire: float | None = None
    last_fired_at: float | None = None
    fire_count: int = 0
    fired_by: str | None = None


class ScheduleExists(StemError, ValueError):
    """``ScheduleStore.add`` of a name that is already stored."""


class ScheduleNotFound(StemError, LookupError):
    """A schedule entry name that is not stored."""


class ScheduleConflict(StemError):
    """``ScheduleStore.update`` with an ``expected_version`` that is stale."""


@attrs.frozen(kw_only=True)
class Revocation:
    """A standing order that a task must not run (or stop running)."""

    task_id: str
    terminate: bool = False
    reason: str = "revoked"
    expires_at: float | None = None
    version: int = 0  # set by the store


@attrs.frozen(kw_only=True)
class WorkflowStep:
    """One checkpoint in a workflow run's history (``index`` counts from 0).

    ``kind`` is ``activity``, ``step``, ``sleep``, ``event``, ``now``,
    ``uuid`` or ``child``; ``name`` is the task, step, topic or workflow name.
    ``status`` is ``pending`` (started, not finished), ``done`` (``value``
    holds the result) or ``failed`` (``error`` says why). ``meta`` holds what
    the engine needs to finish a pending step (``task_id``, ``due_at``,
    ``timeout_at``, ``child_run_id``).
    """

    run_id: str
    index: int
    kind: str
    name: str
    status: str = "pending"
    value: Any = None
    error: ErrorInfo | None = None
    started_at: float = 0.0
    finished_at: float | None = None
    meta: Mapping[str, Any] = attrs.field(factory=dict)


#: Statuses of a run that is still going (``pending``: never driven yet).
WORKFLOW_ACTIVE = frozenset({"pending", "running", "suspended"})
#: Final statuses: nothing changes a run once it has one of these.
WORKFLOW_FINAL = frozenset({"completed", "failed", "cancelled", "version-mismatch"})


@attrs.frozen(kw_only=True)
class WorkflowRun:
    """One run of a workflow, as stored.

    ``due_at`` is when an engine may claim it (None: only a wake makes it due;
    while leased it is the lease deadline). ``lease_owner`` is the engine
    driving it. ``fence`` is the fencing token of the latest claim: every claim
    adds one, and every write of a drive presents the token its claim returned,
    so a driver whose lease passed (or that claimed the run again itself) is
    refused. ``wakes`` counts wake-ups, so a wake that arrives while the run
    is being driven is not lost when it suspends. ``deadline`` is the
    ``max_duration`` limit as an epoch time. ``history`` is filled only by
    calls that say so (``client.workflows.get``).
    """

    run_id: str
    workflow: str
    version: int = 1
    params: Any = None
    status: str = "pending"
    created_at: float = 0.0
    updated_at: float = 0.0
    due_at: float | None = None
    lease_owner: str | None = None
    fence: int = 0
    wakes: int = 0
    cancel_requested: bool = False
    deadline: float | None = None
    parent_id: str | None = None
    current_step: str | None = None
    result: Any = None
    error: ErrorInfo | None = None
    history: tuple[WorkflowStep, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.status in WORKFLOW_FINAL


# --------------------------------------------------------------------------
# The stores


@runtime_checkable
class Broker(Protocol):
    """Queues of envelopes with leases, delays, priorities and dead letters.

    Ordering: within a queue, ready messages are delivered highest ``priority``
    first (0..9), then oldest first (by ``not_before`` or enqueue order).
    Across the queues named in one ``claim``, queues are served in the order
    given.
    """

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Store envelopes on their queues; those whose ``not_before`` is in the
        future stay invisible until then. All or nothing for the batch."""

    async def publish_raw(self, queue: str, body: bytes) -> None:
        """Store a body as a foreign producer would (used for poison messages)."""

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int,
        lease: float,
        consumer: str,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready messages for ``lease`` seconds.

        Blocks up to ``wait`` seconds for at least one message, woken by a
        publish (not only by polling), and returns ``[]`` if none came. A
        message leased here is not delivered again until its lease expires or
        it is nacked. Cancellation may lose the batch to the lease timeout
        (at-least-once), never a message. While the backend is unreachable it
        retries until ``wait`` passes, then raises ``BrokerUnavailable``;
        callers retry.
        """

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove finished messages. Stale receipts are ignored."""

    async def nack(
        self,
        delivery: Delivery,
        *,
        requeue: bool = True,
        delay: float = 0.0,
        envelope: Envelope | None = None,
    ) -> bool:
        """Give a leased message back.

        With ``requeue`` it becomes visible again at ``now + delay`` (the
        later of that and ``envelope.not_before`` where a backend stores both),
        replaced by ``envelope`` when given (a retry's next attempt keeps the
        id). Without ``requeue`` it is dropped (its outcome was stored).
        Returns False (changing nothing) for a stale receipt.
        """

    async def extend(self, deliveries: Sequence[Delivery], lease: float) -> list[bool]:
        """Renew leases to ``now + lease``; one flag per delivery: still held?

        Never creates a second copy of a message."""

    async def dead_letter(self, delivery: Delivery, entry: DeadLetter) -> bool:
        """Atomically remove the leased message and record ``entry`` as a new
        entry with its own ``entry_id`` (unique in the queue, never reused).

        Every entry is kept: two entries with one task id (an empty id, a
        forged one, a task that died twice) are two entries. Returns False
        (changing nothing) for a stale receipt."""

    async def list_dead(
        self, queue: str, *, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        """Dead letters of a queue, oldest first."""

    async def get_dead(self, queue: str, task_id: str) -> DeadLetter | None:
        """The newest entry of ``task_id`` in the queue's dead letters."""

    async def replay_dead(
        self,
        queue: str,
        *,
        task_ids: Sequence[str] | None = None,
        limit: int | None = None,
        since: float | None = None,
        delay: float = 0.0,
        dry_run: bool = False,
    ) -> list[str]:
        """Put dead letters back on their queue as fresh tasks (attempt 1,
        same id, ``meta["history"]`` cleared), visible after ``delay``;
        returns the ids chosen. ``since``
        keeps entries with ``dead_at >= since``. ``dry_run`` changes nothing.
        Undecodable entries are never replayed. Of several entries with one
        task id only the newest is replayed (one task, one message); the
        others stay."""

    async def purge_dead(
        self, queue: str, *, since: float | None = None, limit: int | None = None
    ) -> int:
        """Delete dead letters (oldest first); returns how many."""

    async def stats(self, queue: str) -> QueueStats: ...

    async def queues(self) -> list[str]:
        """Names of queues that hold or held messages."""

    async def purge(self, queue: str) -> int:
        """Delete the queue's pending and delayed messages (not leased ones)."""

    async def remove(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete the pending and delayed messages of ``task_ids`` from
        ``queue`` (a revoked task's); leased ones are kept, their worker
        settles them. Returns how many were deleted."""

    async def broadcast(self, message: Mapping[str, Any]) -> None:
        """Send a JSON object to every current subscriber (remote control).

        Messages must stay under 7,900 bytes of JSON (Postgres NOTIFY's limit);
        larger ones raise ValueError."""

    def subscribe(
        self,
    ) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[dict[str, Any]]]:
        """Receive every broadcast sent while subscribed."""


@runtime_checkable
class ResultBackend(Protocol):
    """Task states and outcomes, group counters and one-shot claims."""

    async def set_state(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store results (each replaces the previous record whole, so a later
        write clears an earlier error). A terminal record is final: writing
        over it changes nothing and yields False. ``ttl`` seconds after the
        write a record may be forgotten. Wakes ``wait`` callers."""

    async def create(
        self, results: Sequence[TaskResult], *, ttl: float | None = None
    ) -> list[bool]:
        """Store each record only if its task has no live record (in any
        state, terminal ones included, until their ttl passes); True for the
        ones stored. Atomic per record across connections and processes: of
        concurrent creates of one task id exactly one is True. A task id
        repeated in ``results`` is created at most once."""

    async def get(self, task_id: str) -> TaskResult | None: ...

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskResult | None]: ...

    async def wait(self, task_id: str, *, timeout: float) -> TaskResult | None:
        """The terminal result, waiting up to ``timeout`` seconds for it; woken
        by the write (across processes where the backend is shared). None on
        timeout."""

    async def forget(self, task_id: str) -> None: ...

    async def group_add(
        self, group_id: str, index: int, result: TaskResult, *, ttl: float | None = None
    ) -> int:
        """Record member ``index`` of a group; returns how many distinct
        members are recorded. Recording the same index again (a retry, a
        redelivery) does not count twice; the last write wins.

        Each add sets the group's expiry to ``ttl`` seconds from now (None:
        never), judged by the client's clock (``stem.now()``), never the
        server's. Once a group has expired it has no members, and an add
        raises :class:`stem.GroupExpired`, changing nothing, for at least
        another ``ttl`` seconds (the store remembers the expiry that long);
        after that the id may start a new group."""

    async def group_results(self, group_id: str) -> dict[int, TaskResult]:
        """The members of a live group by index; ``{}`` for an unknown or
        expired group."""

    async def claim_once(
        self, key: str, owner: str, *, ttl: float | None = None
    ) -> bool:
        """True for exactly one call per ``key`` (until the ttl passes); a
        second call is False even for the same owner."""

    async def reserve_unique(self, key: str, task_id: str, *, ttl: float | None) -> str:
        """Set ``key`` to ``task_id`` unless it is held; return the holder."""

    async def release_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` holds it."""


@runtime_checkable
class LockStore(Protocol):
    """Leases with an owner and a time to live (leader election, beat)."""

    async def acquire(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take the lock if free or expired; acquiring a lock you already hold
        succeeds and resets its ttl."""

    async def renew(self, name: str, owner: str, *, ttl: float) -> bool:
        """Extend only if ``owner`` still holds the lock; False once the ttl
        has passed, even if nobody else took it."""

    async def release(self, name: str, owner: str) -> bool:
        """Release only if ``owner`` holds it."""

    async def owner(self, name: str) -> str | None: ...


@runtime_checkable
class ScheduleStore(Protocol):
    """Schedule entries and the record of their fires (beat).

    Every method is atomic. ``revision`` grows on every add, update (that
    changes something) and remove, not on fires; :meth:`wait_changed` lets a
    beat sleep until its next tick yet wake when entries change.
    """

    async def add(
        self, name: str, definition: Mapping[str, Any], *, enabled: bool = True
    ) -> ScheduleRecord:
        """Store a new entry (version 1); raises ScheduleExists if ``name`` is
        stored."""

    async def update(
        self,
        name: str,
        *,
        definition: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        expected_version: int | None = None,
    ) -> ScheduleRecord:
        """Change the definition and/or ``enabled``, keeping the fire record.

        Raises ScheduleNotFound for an unknown name, ScheduleConflict when
        ``expected_version`` is given and differs from the stored version.
        A change that changes nothing leaves the record (and version) as is."""

    async def remove(self, name: str) -> bool:
        """Delete the entry; False if it was not stored."""

    async def get(self, name: str) -> ScheduleRecord | None: ...

    async def list(self) -> builtins.list[ScheduleRecord]:
        """Every entry, by name; a stored entry that no longer decodes is
        skipped with a warning (``get`` of it raises DecodeError)."""

    async def record_fire(
        self,
        name: str,
        *,
        expected_version: int,
        tick: float,
        fired_at: float,
        owner: str,
    ) -> ScheduleRecord | None:
        """Compare-and-set the last fire: only if the stored version is
        ``expected_version`` and ``tick`` is later than ``last_fire``, set
        ``last_fire=tick``, count the fire and bump the version; returns the
        new record. None (changing nothing) otherwise: another instance fired
        or the entry changed or was removed."""

    async def revision(self) -> int:
        """The current revision of the set of entries."""

    async def wait_changed(self, revision: int, *, timeout: float) -> int:
        """Return the revision once it differs from ``revision`` (a change in
        this process wakes at once, one in another process within about a
        second), or after ``timeout`` seconds."""


@runtime_checkable
class RevocationStore(Protocol):
    """Revoked task ids, with a version that grows on every upsert."""

    async def revoke(self, revocation: Revocation) -> int:
        """Upsert; returns the new version."""

    async def is_revoked(self, task_ids: Sequence[str]) -> dict[str, Revocation]:
        """The live (unexpired) revocations among ``task_ids``."""

    async def changes_since(self, version: int) -> tuple[list[Revocation], int]:
        """Live revocations upserted after ``version``, and the latest version.

        Versions become visible in increasing order, so a reader never skips a
        revocation by having seen a higher version first."""


@runtime_checkable
class HeartbeatStore(Protocol):
    async def beat(self, info: WorkerInfo, *, ttl: float) -> None: ...

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose last beat is within its ttl."""

    async def forget(self, worker_id: str) -> None: ...


@runtime_checkable
class RateLimitStore(Protocol):
    """Shared token buckets (``rate_limit_scope="global"``)."""

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        """Take one token from bucket ``key`` (``rate`` tokens per second,
        at most ``burst`` saved). Returns 0.0 if taken, else the seconds until
        one will be available (nothing taken). ``rate <= 0`` raises
        ValueError."""


@runtime_checkable
class WorkflowStore(Protocol):
    """Workflow runs, their step history, timers, events and leases.

    A run is claimable when it is active, ``due_at <= now`` and its lease (if
    any) has passed. Claiming leases it (``due_at`` becomes the lease
    deadline) and returns the run with a new fencing token (``run.fence``, one
    more than the last claim's), so two engines never drive one run. Every
    write of a drive (``save_step``, ``watch``, ``unwatch``, ``renew``,
    ``suspend``, ``release``, ``finish``) presents that token and is refused
    with :class:`stem.WorkflowLeaseLost`, changing nothing, unless it still
    holds the lease: the run is active, its lease has not passed and it was
    not claimed again since (by anyone, the same owner included).

    A final run (``WORKFLOW_FINAL``) never changes again: its steps, status,
    result and ``updated_at`` stay as ``finish`` left them (events, sends,
    wakes and cancels leave it as it is).

    Every change that can make a run due wakes :meth:`wait_due` callers
    (across processes where the backend is shared).
    """

    async def create_run(self, run: WorkflowRun) -> bool:
        """Store a new run; False (changing nothing) if ``run_id`` exists."""

    async def get_run(self, run_id: str) -> WorkflowRun | None: ...

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WorkflowRun]:
        """Runs matching every filter given, oldest first."""

    async def save_step(self, step: WorkflowStep, *, fence: int) -> None:
        """Insert or replace step ``(run_id, index)`` and set the run's
        ``updated_at`` to now, if ``fence`` holds the run's lease
        (WorkflowLeaseLost otherwise)."""

    async def get_step(self, run_id: str, index: int) -> WorkflowStep | None: ...

    async def list_steps(self, run_id: str) -> list[WorkflowStep]:
        """The run's steps in index order."""

    async def claim(
        self,
        owner: str,
        *,
        names: Sequence[str],
        lease: float,
        limit: int = 1,
        max_versions: Mapping[str, int] | None = None,
    ) -> list[WorkflowRun]:
        """Lease up to ``limit`` due runs of the workflows ``names`` to
        ``owner`` for ``lease`` seconds (status becomes ``running``, ``fence``
        grows by one). A run of a workflow named in ``max_versions`` whose
        ``version`` is higher than the number given there is left alone (an
        engine with newer code takes it)."""

    async def renew(self, run_id: str, fence: int, *, lease: float) -> None:
        """Extend the lease of the claim ``fence`` to ``lease`` seconds from
        now (WorkflowLeaseLost if it no longer holds it)."""

    async def suspend(
        self,
        run_id: str,
        fence: int,
        *,
        until: float | None,
        wakes: int,
        current_step: str | None = None,
    ) -> None:
        """Release the lease of the claim ``fence`` and park the run until
        ``until`` (None: until a wake). If the run was woken since the claim
        that saw ``wakes``, it is due at once instead. WorkflowLeaseLost if
        ``fence`` no longer holds the lease."""

    async def release(self, run_id: str, fence: int) -> None:
        """Give up the lease of the claim ``fence`` without parking the run:
        it is due at once, for any engine (WorkflowLeaseLost if ``fence`` no
        longer holds the lease)."""

    async def wake(self, run_ids: Sequence[str]) -> None:
        """Make active runs due now (a leased run is due again as soon as its
        driver suspends it). Unknown or final runs are ignored."""

    async def finish(
        self,
        run_id: str,
        fence: int,
        *,
        status: str,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Record a final status (one of WORKFLOW_FINAL) if the claim
        ``fence`` holds the lease (WorkflowLeaseLost otherwise); drops the
        run's watchers and mailbox and wakes :meth:`wait_run` callers."""

    async def request_cancel(self, run_id: str) -> bool:
        """Flag an active run for cancellation and make it due; False for an
        unknown or final run."""

    async def watch(self, run_id: str, index: int, topic: str, *, fence: int) -> bool:
        """Wait for ``topic`` at step ``index`` (a pending ``event`` step), if
        the claim ``fence`` holds the lease (WorkflowLeaseLost otherwise).

        True if the step is already ``done`` (resolved earlier). Otherwise, if
        the run's mailbox holds a message on ``topic`` (see :meth:`send`), the
        oldest is taken and the step becomes ``done`` with its payload at
        once: True. Otherwise a watcher is registered (idempotent): False."""

    async def unwatch(self, run_id: str, index: int, *, fence: int) -> bool:
        """Remove the watcher of step ``index``: True if it was still
        unresolved (so it never will be), False if an event resolved it.
        WorkflowLeaseLost if the claim ``fence`` no longer holds the lease."""

    async def emit(self, topic: str, payload: Any) -> list[str]:
        """Resolve every watcher on ``topic`` of an active run now, each
        exactly once: its step becomes ``done`` with ``payload`` and its run
        is woken. Returns the run ids. Runs that are not waiting never see
        the event."""

    async def send(self, run_id: str, topic: str, payload: Any) -> bool:
        """Deliver to the run's watcher on ``topic`` if it has one (True),
        else keep the message in the run's mailbox for a later :meth:`watch`
        (False). Messages on one topic are taken oldest first. An unknown or
        final run raises :class:`stem.UnknownWorkflow`, storing nothing."""

    async def next_due(
        self, names: Sequence[str], *, max_versions: Mapping[str, int] | None = None
    ) -> float | None:
        """The earliest ``due_at`` among active runs of ``names`` (leaving out
        the runs :meth:`claim` would leave alone for ``max_versions``)."""

    async def wait_due(self, cursor: int | None, *, timeout: float) -> int:
        """Wait for a change that may make a run due and return the change
        cursor (a counter every create, wake, suspend, release, event and
        cancel increases, in any process sharing the backend).

        Returns at once if the cursor differs from ``cursor`` (None: just read
        it), else when it changes or after ``timeout`` seconds. Pass back the
        value it returned, read before looking for work, and no change is
        missed."""

    async def wait_run(self, run_id: str, *, timeout: float) -> WorkflowRun | None:
        """The run once it is final, waiting up to ``timeout`` seconds (woken
        by the write); None on timeout."""


@runtime_checkable
class CombinedPublish(Protocol):
    """Enqueueing in one atomic step, which a backend should offer (the four
    of this project do).

    ``create_and_publish(results, ttl=, envelopes=)`` takes one QUEUED record
    per envelope (``results[i].task_id == envelopes[i].id``). It has the
    effects of ``results.create(results, ttl=ttl)`` followed by
    ``broker.publish`` of the envelopes whose record was created, as one
    atomic step: a process that dies half-way leaves neither, and of
    producers racing with one task id exactly one publishes. Returns the
    created flags. Without it, the BrokerActor makes the two calls in turn,
    and a crash between them leaves a QUEUED record with no message."""

    async def create_and_publish(
        self,
        results: Sequence[TaskResult],
        *,
        ttl: float | None,
        envelopes: Sequence[Envelope],
    ) -> list[bool]: ...


@attrs.frozen(kw_only=True)
class StoredEvent:
    """One record of a backend's event log. ``cursor`` orders it (later
    records have larger cursors, across every writer); ``body`` is the record
    as it was appended, which a reader decodes totally (a foreign writer may
    have put anything there)."""

    cursor: int
    body: bytes


@runtime_checkable
class EventStore(Protocol):
    """The lifecycle-event log that every process sharing a backend sees
    (``backend.events``), bounded, and the register of who is listening.

    Workers, beat and workflow engines append events only while
    :meth:`listeners` says someone listens, so a platform nobody watches
    pays one small read every few seconds. Only the newest ``capacity``
    records are kept; older ones are dropped as new ones arrive.
    """

    capacity: int

    async def append(self, bodies: Sequence[bytes]) -> int:
        """Store records in order, in one atomic write, and drop those past
        ``capacity``; returns the cursor of the last one (the newest cursor
        when ``bodies`` is empty)."""

    async def read(
        self, after: int, *, limit: int = 100, wait: float = 0.0
    ) -> builtins.list[StoredEvent]:
        """Records whose cursor is larger than ``after``, oldest first, at
        most ``limit``. With none there, waits up to ``wait`` seconds for the
        first (returning ``[]`` if none came). Cancelling it loses nothing."""

    async def last_cursor(self) -> int:
        """The cursor of the newest record appended (0 before the first):
        read after it to see only what comes next."""

    async def listen(self, listener: str, *, ttl: float) -> None:
        """Say ``listener`` listens for ``ttl`` more seconds (renew it before
        that passes)."""

    async def unlisten(self, listener: str) -> None: ...

    async def listeners(self) -> int:
        """How many listeners are live (their ttl has not passed)."""


@attrs.frozen(kw_only=True)
class TaskPage:
    """One page of :meth:`TaskQuery.list_tasks`: records newest first
    (by ``updated_at``, then task id); pass ``next_before`` back as
    ``before`` for the next page (None: this was the last)."""

    results: tuple[TaskResult, ...]
    next_before: str | None = None


@runtime_checkable
class TaskQuery(Protocol):
    """Task records listed for operators (``backend.results`` offers it on
    the four built-in backends). Every call is bounded whatever the number
    of records: at most ``limit`` (up to ``stem._taskquery.MAX_LIMIT``)
    come back, and a filter (``state``, ``queue``, ``name``) looks through
    at most ``stem._taskquery.SCAN_BOUND`` of the newest records from
    ``before`` on. Expired records are never listed."""

    async def list_tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> TaskPage:
        """Live records matching every filter given, newest first, after the
        cursor ``before`` (a ``next_before`` of an earlier page). A cursor
        that does not parse raises ValueError."""

    async def finished_counts(
        self, *, since: float, bucket: float = 60.0
    ) -> dict[float, dict[str, int]]:
        """Terminal records written since ``since``, counted by bucket (the
        start of each ``bucket``-second interval, epoch seconds) and state
        (``succeeded``, ``failed``, ``revoked``). A backend may keep counting
        a record after its ttl passed, and round ``since`` down to the
        minute (Redis counts writes per minute)."""


@runtime_checkable
class Backend(Protocol):
    """One backend: every store, opened from one URL."""

    capabilities: Capabilities
    broker: Broker
    results: ResultBackend
    locks: LockStore
    schedules: ScheduleStore
    revocations: RevocationStore
    heartbeats: HeartbeatStore
    limiter: RateLimitStore
    workflows: WorkflowStore

    @property
    def url(self) -> str:
        """The URL with any password replaced by ``***`` (for display; keep
        the real URL to open the backend elsewhere)."""

    async def aclose(self) -> None: ...


__all__ = [
    "WORKFLOW_ACTIVE",
    "WORKFLOW_FINAL",
    "Backend",
    "Broker",
    "Capabilities",
    "CombinedPublish",
    "DeadLetter",
    "Delivery",
    "EventStore",
    "HeartbeatStore",
    "LockStore",
    "QueueStats",
    "RateLimitStore",
    "ResultBackend",
    "Revocation",
    "RevocationStore",
    "ScheduleConflict",
    "ScheduleExists",
    "ScheduleNotFound",
    "ScheduleRecord",
    "ScheduleStore",
    "StoredEvent",
    "TaskPage",
    "TaskQuery",
    "WorkerInfo",
    "WorkflowRun",
    "WorkflowStep",
    "WorkflowStore",
]
