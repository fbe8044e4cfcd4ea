"""Fixtures for the postgres backend: a throwaway PostgreSQL cluster.

``postgres_server`` (session scope) runs ``initdb`` in a temporary directory
and starts ``postgres`` on a free port; every ``postgres_backend_factory()``
call opens the backend on a fresh schema of that cluster, so tests never see
each other's data. ``postgres_cluster_factory`` starts private clusters for
tests that restart or stop the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests._servers import TlsFiles, free_port, missing


def _bindir() -> Path | None:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.CalledProcessError):
            pass
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    return None


@attrs.define
class PostgresCluster:
    """One running throwaway cluster (``initdb`` + ``pg_ctl``)."""

    bindir: Path
    datadir: Path
    port: int
    #: With ``tls``: ``ssl=on``, TCP only through ``hostssl`` lines, the role
    #: named by the client certificate logs in with ``cert`` (mTLS).
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}): "
                f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )

    def _options(self) -> str:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.datadir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        if self.tls is not None:
            options += (
                " -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key"
                " -c ssl_ca_file=ca.pem"
            )
        return options

    def _install_tls(self, tls: TlsFiles) -> None:
        for source, name in (
            (tls.server_cert, "server.pem"),
            (tls.server_key, "server.key"),
            (tls.ca, "ca.pem"),
        ):
            target = self.datadir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(target, "postgres", "postgres")
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all {tls.client_name} 127.0.0.1/32 cert\n"
            "hostssl all all 127.0.0.1/32 trust\n"
        )

    def psql(self, sql: str) -> None:
        """Run ``sql`` as postgres over the cluster's Unix socket."""
        self._run(
            "psql",
            *("-h", str(self.datadir), "-p", str(self.port), "-U", "postgres"),
            *("-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql),
        )

    def init(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir.parent, "postgres", "postgres")
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if self.tls is not None:
            self._install_tls(self.tls)

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-w",
            "-l",
            str(self.datadir / "server.log"),
            "start",
            "-o",
            self._options(),
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-m", mode, "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def restart(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-w",
            "-m",
            mode,
            "-l",
            str(self.datadir / "server.log"),
            "restart",
            "-o",
            self._options(),
        )


def _start_cluster(tls: TlsFiles | None = None) -> PostgresCluster:
    bindir = _bindir()
    if bindir is None:
        missing("PostgreSQL binaries (initdb, pg_ctl) not found")
    # Not under pytest's tmp dir: that one is private to root, and initdb
    # runs as user postgres.
    base = Path(tempfile.mkdtemp(prefix="stem-pg-"))
    cluster = PostgresCluster(
        bindir=bindir, datadir=base / "data", port=free_port(), tls=tls
    )
    cluster.init()
    cluster.start()
    if tls is not None:
        cluster.psql(f'CREATE ROLE "{tls.client_name}" LOGIN SUPERUSER')
    return cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the whole session, stopped at its end."""
    cluster = _start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_cluster_factory() -> Iterator[Callable[..., PostgresCluster]]:
    """Start private clusters (for tests that restart or stop the server);
    ``make(tls=files)`` starts one that takes TLS connections only."""
    started: list[PostgresCluster] = []

    def make(tls: TlsFiles | None = None) -> PostgresCluster:
        cluster = _start_cluster(tls)
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.destroy()


def fresh_schema_url(base_url: str) -> str:
    return f"{base_url}?schema=t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def postgres_url(postgres_server: PostgresCluster) -> str:
    """A URL naming a fresh, empty schema on the session cluster."""
    return fresh_schema_url(postgres_server.url)


@pytest.fixture
def postgres_backend_factory(
    postgres_server: PostgresCluster,
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """``factory()`` opens a fresh, empty postgres backend (a new schema)."""
    from stem.adapters.postgres import open_backend

    def factory(**options: Any) -> AbstractAsyncContextManager[Any]:
        @asynccontextmanager
        async def opened() -> AsyncIterator[Any]:
            async with open_backend(
                fresh_schema_url(postgres_server.url), **options
            ) as backend:
                yield backend

        return opened()

    return factory
