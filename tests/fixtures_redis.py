"""Fixtures for the redis backend: a throwaway ``redis-server`` per session and
a factory of fresh namespaces on it."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests._servers import TlsFiles, free_port, missing


class RedisServer:
    """A ``redis-server`` subprocess on a free port in its own directory."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not on PATH (apt-get install redis-server)")
        self.binary: str = binary
        self.directory = directory
        self.appendonly = appendonly
        #: With ``tls``, the server listens on TLS only (``--port 0``).
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The plain URL (``rediss://`` with the CA, without a client
        certificate, when the server is TLS-only)."""
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            *self._listen_args(),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
        ]
        if self.tls is not None:
            args += [
                *("--tls-cert-file", str(self.tls.server_cert)),
                *("--tls-key-file", str(self.tls.server_key)),
                *("--tls-ca-cert-file", str(self.tls.ca)),
                *("--tls-auth-clients", "yes" if self.tls_auth_clients else "no"),
            ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"redis-server exited with {code}")
            try:
                address = ("127.0.0.1", self.port)
                with self._open(address) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING in time")

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port)]

    def _open(self, address: tuple[str, int]) -> socket.socket:
        sock = socket.create_connection(address, timeout=0.2)
        if self.tls is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (no persistence)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_backend_factory(
    redis_server: RedisServer,
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """Each call opens the backend on a fresh namespace (a uuid)."""
    from stem.adapters.redis import open_backend

    def factory(**options: Any) -> AbstractAsyncContextManager[Any]:
        options.setdefault("namespace", f"t{uuid.uuid4().hex[:12]}")
        return open_backend(redis_server.url, **options)

    return factory
