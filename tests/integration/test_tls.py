"""TLS to real servers: ``rediss://`` and Postgres ``sslmode=verify-full``,
with a throwaway CA (trustme), server certificates for 127.0.0.1, a wrong CA
that must be refused, and client certificates (mTLS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stem
from stem._errors import BrokerUnavailable
from tests._servers import TlsFiles, make_tls_files
from tests.fixtures_postgres import PostgresCluster, _start_cluster
from tests.fixtures_redis import RedisServer


@stem.task("tls.square")
async def square(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
    return int(args["n"]) ** 2


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA of another, unrelated PKI (it signed nothing of the servers)."""
    return make_tls_files(tmp_path_factory.mktemp("tls-other")).ca


@pytest.fixture(scope="module")
def redis_tls(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RedisServer]:
    """A redis-server listening on TLS only; client certificates optional."""
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=tls_files)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_mtls(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RedisServer]:
    """A redis-server on TLS only that requires a client certificate."""
    server = RedisServer(
        tmp_path_factory.mktemp("redis-mtls"), tls=tls_files, tls_auth_clients=True
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_tls(tls_files: TlsFiles) -> Iterator[PostgresCluster]:
    """A cluster taking TCP connections over TLS only (``hostssl``); the role
    ``mtls`` logs in with its client certificate (``cert``)."""
    cluster = _start_cluster(tls_files)
    yield cluster
    cluster.destroy()


async def _round_trip(url: str) -> None:
    """Enqueue, a worker runs it, the result comes back, all over ``url``."""
    async with stem.Client.from_url(url, tasks=[square]) as client:
        async with client.worker(concurrency=2):
            task_id = await client.enqueue("tls.square", args={"n": 12})
            result = await client.wait_for(task_id, timeout=30)
    assert result.state == stem.TaskState.SUCCEEDED
    assert result.value == 144


def _rediss(server: RedisServer, ca: Path, *extra: str) -> str:
    query = "&".join([f"ssl_ca_certs={ca}", *extra, f"namespace=tls{id(extra)}"])
    return f"rediss://127.0.0.1:{server.port}/0?{query}"


def _pg(cluster: PostgresCluster, ca: Path, user: str = "postgres", *extra: str) -> str:
    query = "&".join(
        ["sslmode=verify-full", f"sslrootcert={ca}", *extra, "retry_timeout=1"]
    )
    return f"postgresql://{user}@127.0.0.1:{cluster.port}/postgres?{query}"


@pytest.mark.redis
@pytest.mark.slow
async def test_rediss_verify_full_round_trip(
    redis_tls: RedisServer, tls_files: TlsFiles
) -> None:
    """Over rediss:// with the CA (hostname checked, redis-py's default) a
    task is enqueued, run by a worker and its result read back."""
    await _round_trip(_rediss(redis_tls, tls_files.ca))


@pytest.mark.redis
async def test_rediss_wrong_ca_is_refused_clearly(
    redis_tls: RedisServer, wrong_ca: Path
) -> None:
    """A server certificate not signed by the configured CA is refused: the
    error says the certificate failed verification, and no password leaks."""
    url = _rediss(redis_tls, wrong_ca, "retry_for=0.5").replace(
        "rediss://", "rediss://:s3cret@"
    )
    with pytest.raises(BrokerUnavailable) as caught:
        await _round_trip(url)
    message = str(caught.value)
    assert "certificate verify failed" in message
    assert "s3cret" not in message


@pytest.mark.redis
async def test_rediss_plain_redis_url_to_tls_port_fails(
    redis_tls: RedisServer,
) -> None:
    """A plain redis:// URL to a TLS-only port does not connect in clear."""
    url = f"redis://127.0.0.1:{redis_tls.port}/0?retry_for=0.5&connect_timeout=1"
    with pytest.raises(BrokerUnavailable):
        await _round_trip(url)


@pytest.mark.redis
@pytest.mark.slow
async def test_rediss_client_certificate_required(
    redis_mtls: RedisServer, tls_files: TlsFiles
) -> None:
    """With --tls-auth-clients yes, a connection without a client certificate
    is refused and one with ssl_certfile/ssl_keyfile runs tasks."""
    with pytest.raises(BrokerUnavailable):
        await _round_trip(_rediss(redis_mtls, tls_files.ca, "retry_for=0.5"))
    await _round_trip(
        _rediss(
            redis_mtls,
            tls_files.ca,
            f"ssl_certfile={tls_files.client_cert}",
            f"ssl_keyfile={tls_files.client_key}",
        )
    )


@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_verify_full_round_trip(
    postgres_tls: PostgresCluster, tls_files: TlsFiles
) -> None:
    """With sslmode=verify-full and sslrootcert a task round-trips."""
    await _round_trip(_pg(postgres_tls, tls_files.ca, "postgres", "schema=tls_full"))


@pytest.mark.postgres
async def test_postgres_wrong_ca_is_refused_clearly(
    postgres_tls: PostgresCluster, wrong_ca: Path
) -> None:
    """verify-full against a CA that did not sign the server is refused with
    a certificate error; the password is not in the message."""
    url = _pg(postgres_tls, wrong_ca).replace("postgres@", "postgres:s3cret@")
    with pytest.raises(BrokerUnavailable) as caught:
        await _round_trip(url)
    message = str(caught.value)
    assert "certificate verify failed" in message
    assert "s3cret" not in message


@pytest.mark.postgres
async def test_postgres_without_tls_is_refused(postgres_tls: PostgresCluster) -> None:
    """sslmode=disable finds no pg_hba line (TLS only) and fails clearly."""
    url = (
        f"postgresql://postgres@127.0.0.1:{postgres_tls.port}/postgres"
        "?sslmode=disable&retry_timeout=1"
    )
    with pytest.raises((BrokerUnavailable, stem.ConfigError)) as caught:
        await _round_trip(url)
    assert "no encryption" in str(caught.value) or "pg_hba" in str(caught.value)


@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_client_certificate_login(
    postgres_tls: PostgresCluster, tls_files: TlsFiles
) -> None:
    """The role ``mtls`` (pg_hba ``cert``) is refused without a client
    certificate and runs tasks with sslcert/sslkey."""
    with pytest.raises((BrokerUnavailable, stem.ConfigError)):
        await _round_trip(_pg(postgres_tls, tls_files.ca, "mtls"))
    await _round_trip(
        _pg(
            postgres_tls,
            tls_files.ca,
            "mtls",
            f"sslcert={tls_files.client_cert}",
            f"sslkey={tls_files.client_key}",
            "schema=tls_mtls",
        )
    )
