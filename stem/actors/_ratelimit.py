"""Rate limiting for a worker: token buckets per task name (and key).

Only tasks whose options set ``rate_limit`` ever reach this module; the
worker's hot path for other tasks is one attribute check.

* ``scope="local"``: buckets live in the worker. A slot that must wait a
  short time *reserves* the next token (the bucket goes into debt) and sleeps
  exactly until it is due, so waiting slots never race each other.
* ``scope="global"``: buckets live in the backend
  (:meth:`stem.contracts.RateLimitStore.take`), so every worker together
  respects the limit. A take that fails says how long until a token; the
  slot sleeps that long (short waits) and tries again.

Either way a wait longer than ``hold`` seconds is not spent in a slot: the
worker gives the delivery back with ``nack(delay=wait)`` (same envelope, same
attempt), freeing the slot. A limited task is deferred, never failed.
"""

from __future__ import annotations

import attrs
import trio

from stem._envelope import Envelope
from stem._options import TaskOptions
from stem._ratelimit import RateLimit
from stem.contracts import RateLimitStore

#: Float tolerance when a bucket refills to exactly one token.
_EPSILON = 1e-9


def bucket_key(env: Envelope, opts: TaskOptions) -> str:
    """``name`` or ``name|key-value`` when ``rate_limit_key`` names a header."""
    if opts.rate_limit_key is None:
        return env.name
    return f"{env.name}|{env.headers.get(opts.rate_limit_key, '')}"


@attrs.define(eq=False)
class _Bucket:
    tokens: float
    at: float


@attrs.define(eq=False)
class WorkerRateLimiter:
    """The local buckets of one worker plus access to the global store."""

    store: RateLimitStore
    hold: float = 2.0
    _buckets: dict[str, _Bucket] = attrs.field(factory=dict, init=False)
    deferred: int = attrs.field(default=0, init=False)

    def reserve_local(self, key: str, limit: RateLimit, *, hold: float) -> float:
        """Take a token now (0.0), or reserve one due in at most ``hold`` s
        (returns the wait, token taken), or return the wait (> hold) without
        taking anything."""
        at = trio.current_time()
        rate = limit.per_second
        capacity = float(limit.burst)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=capacity, at=at)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (at - bucket.at) * rate)
            bucket.at = at
        if bucket.tokens >= 1.0 - _EPSILON:
            bucket.tokens -= 1.0
            return 0.0
        wait = (1.0 - bucket.tokens) / rate
        if wait <= hold:
            bucket.tokens -= 1.0  # reserved: due after ``wait``
        return wait

    async def acquire(self, env: Envelope, opts: TaskOptions) -> float:
        """Wait for a token when it is due within ``hold`` seconds.

        Returns 0.0 once a token is taken, or the (longer) wait after which
        the delivery should be tried again; nothing is taken then.
        Cancellation while sleeping may waste a reserved local token (the
        limit is then briefly stricter, never looser).
        """
        limit = opts.rate_limit
        assert limit is not None
        key = bucket_key(env, opts)
        hold = min(self.hold, opts.visibility_timeout / 3)
        if opts.rate_limit_scope == "local":
            wait = self.reserve_local(key, limit, hold=hold)
            if wait == 0.0:
                return 0.0
            if wait > hold:
                self.deferred += 1
                return wait
            await trio.sleep(wait)
            return 0.0
        while True:
            wait = await self.store.take(
                f"stem:rate:{key}", rate=limit.per_second, burst=limit.burst
            )
            if wait <= 0.0:
                return 0.0
            if wait > hold:
                self.deferred += 1
                return wait
            await trio.sleep(wait)
