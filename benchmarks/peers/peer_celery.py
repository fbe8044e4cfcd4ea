"""Celery on Redis: one worker process, threads pool, concurrency 10."""

from __future__ import annotations

import time
from typing import Any

from _common import RECORDER, Peer, main, python, redis_url
from celery import Celery

QUEUE = "bench_celery"
app = Celery("peer_celery", broker=redis_url())
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop() -> None:
    RECORDER.hit()


@app.task(name="pickup")
def pickup(sent: float) -> None:
    RECORDER.hit(sent=sent)


@app.task(name="sleep")
def sleep(ms: float) -> None:
    began = time.time()
    time.sleep(ms / 1000)
    RECORDER.hit(started=began)


TASKS = {"noop": noop, "pickup": pickup, "sleep": sleep}


def bulk(jobs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, kw in jobs:
        TASKS[name].apply_async(kwargs=kw)


def one(name: str, kw: dict[str, Any]) -> None:
    TASKS[name].apply_async(kwargs=kw)


def reset() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()


if __name__ == "__main__":
    main(
        Peer(
            name="celery",
            backend="redis",
            worker_argv=lambda c: [
                *(python(), "-m", "celery", "-A", "peer_celery", "worker"),
                *("-P", "threads", "-c", str(c), "-Q", QUEUE, "-l", "warning"),
                *("--without-heartbeat", "--without-gossip", "--without-mingle"),
            ],
            bulk=bulk,
            one=one,
            reset=reset,
            notes="threads pool, -c 10; apply_async() one by one",
        )
    )
