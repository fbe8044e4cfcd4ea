"""Fixtures for the redis backend on a real Redis Cluster: one cluster of 3
masters and 3 replicas per session (``tests/_cluster.py``) and a factory of
fresh namespaces on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from tests._cluster import ClusterUnavailable, RedisClusterServers
from tests._servers import missing


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterServers]:
    """Six redis-server processes joined into one cluster (about 2 s)."""
    try:
        cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    except ClusterUnavailable as exc:
        missing(str(exc))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    return redis_cluster.url


@pytest.fixture
def redis_cluster_backend_factory(
    redis_cluster: RedisClusterServers,
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """Each call opens the backend on the cluster in a fresh namespace."""
    from stem.adapters.redis import open_backend

    def factory(**options: Any) -> AbstractAsyncContextManager[Any]:
        options.setdefault("namespace", f"t{uuid.uuid4().hex[:12]}")
        return open_backend(redis_cluster.url, **options)

    return factory
