"""A task call checked and turned into its envelope (pure: nothing is
written). ``Client.build_envelope`` and so every enqueue go through
:func:`make_envelope`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._app import App
from ._clock import now
from ._codec import canonical_key, dumps, encode_envelope, sized_args
from ._durations import Duration, to_epoch, to_seconds
from ._envelope import Envelope
from ._errors import EncodeError
from ._handler import check_task_name
from ._ids import check_id, new_id
from ._options import TaskOptions, check_priority, check_queue_name


def make_envelope(
    app: App,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    max_message_bytes: int | None,
    queue: str | None = None,
    priority: int | None = None,
    countdown: Duration | None = None,
    eta: datetime | None = None,
    expires: Duration | datetime | None = None,
    task_id: str | None = None,
    unique_key: str | None = None,
    headers: dict[str, str] | None = None,
    max_retries: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Envelope:
    """The envelope of a call of task ``name`` (``app`` gives the task's own
    options). Raises EncodeError (naming the argument) for args that cannot
    be encoded or a message over ``max_message_bytes``, ValueError/TypeError
    for invalid options. With ``app.signing`` the envelope is signed."""
    check_task_name(name)
    if task_id is not None:
        check_id(task_id)
    handler = app.find_task(name)
    opts = handler.task_options if handler is not None else TaskOptions()
    # enqueue's queue= > the task's own queue > the app's routes > "default"
    queue = app.queue_for(name) if queue is None else queue
    clean_args, args_size = sized_args(args, max_bytes=max_message_bytes)
    at = now()
    if countdown is not None and eta is not None:
        raise ValueError("pass countdown= or eta=, not both")
    not_before: float | None = None
    if countdown is not None:
        not_before = at + to_seconds(countdown, name="countdown")
    elif eta is not None:
        not_before = to_epoch(eta, name="eta")
    expires_at: float | None = None
    if isinstance(expires, datetime):
        expires_at = to_epoch(expires, name="expires")
    elif expires is not None:
        expires_at = (not_before or at) + to_seconds(expires, name="expires")
    elif opts.expires is not None:
        expires_at = (not_before or at) + opts.expires
    if max_retries is not None and (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or max_retries < 0
    ):
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if headers is not None and (
        not isinstance(headers, dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        )
    ):
        raise EncodeError("headers must be a dict of str to str")
    env_meta: dict[str, Any] = dict(meta or {})
    if unique_key is not None or opts.unique:
        env_meta["unique_key"] = unique_key or canonical_key(name, clean_args)
    ident = task_id or new_id()
    retries = max_retries if max_retries is not None else opts.max_retries
    env_headers = dict(headers or {})
    if app.signing is not None:
        env_headers = app.signing.signed_headers(
            env_headers,
            id=ident,
            name=name,
            args=clean_args,
            max_retries=retries,
            expires=expires_at,
            meta=env_meta,
        )
    envelope = Envelope(
        id=ident,
        name=name,
        args=clean_args,
        headers=env_headers,
        queue=check_queue_name(queue),
        priority=check_priority(priority if priority is not None else opts.priority),
        attempt=1,
        max_retries=retries,
        not_before=not_before,
        enqueued_at=at,
        expires=expires_at,
        meta=env_meta,
    )
    limit = max_message_bytes
    if limit is not None:
        # A character takes 1 to 4 bytes of UTF-8: only a message that
        # may be near the limit is encoded whole to be measured.
        size = args_size + 512
        if env_meta:
            size += len(dumps(env_meta, what="meta"))
        if size * 4 > limit:
            encode_envelope(envelope, max_bytes=limit)
    return envelope


__all__ = ["make_envelope"]
