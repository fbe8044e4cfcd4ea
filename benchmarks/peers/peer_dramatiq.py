"""Dramatiq on Redis: one worker process with N threads."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from _common import RECORDER, Peer, main, python, redis_url
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)
QUEUE = "bench_dramatiq"


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    RECORDER.hit()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def pickup(sent: float) -> None:
    RECORDER.hit(sent=sent)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def sleep(ms: float) -> None:
    began = time.time()
    time.sleep(ms / 1000)
    RECORDER.hit(started=began)


ACTORS = {"noop": noop, "pickup": pickup, "sleep": sleep}


def bulk(jobs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, kw in jobs:
        ACTORS[name].send(**kw)


def one(name: str, kw: dict[str, Any]) -> None:
    ACTORS[name].send(**kw)


def reset() -> None:
    broker.client.flushdb()


if __name__ == "__main__":
    main(
        Peer(
            name="dramatiq",
            backend="redis",
            worker_argv=lambda c: [
                *(python(), "-m", "dramatiq", "peer_dramatiq"),
                *("--processes", "1", "--threads", str(c)),
            ],
            bulk=bulk,
            one=one,
            reset=reset,
            notes="1 process x 10 threads; send() one by one (no bulk API)",
        )
    )
