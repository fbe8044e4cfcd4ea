"""Helpers for tests that need a real server process."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn

import attrs
import pytest
import trustme


def missing(reason: str) -> NoReturn:
    """Skip with ``reason`` on a laptop; fail when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs this: {reason}", pytrace=False)
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.frozen
class TlsFiles:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1 and
    localhost, and a client certificate whose common name is ``client_name``."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_name: str


def make_tls_files(directory: Path, client_name: str = "mtls") -> TlsFiles:
    """Generate a fresh CA and its certificates (``trustme``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert(f"{client_name}@stem.test", common_name=client_name)
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_name=client_name,
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    for path in (files.server_key, files.client_key):
        path.chmod(0o600)
    return files
