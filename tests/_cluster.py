"""A real Redis Cluster on loopback for tests and benchmarks: six
``redis-server --cluster-enabled yes`` processes on free ports (three
masters, three replicas) joined by ``redis-cli --cluster create``.

Plain code (no pytest), so ``benchmarks/scale.py`` starts the same cluster;
the pytest fixture lives in ``tests/fixtures_redis_cluster.py``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests._servers import free_port


class ClusterUnavailable(RuntimeError):
    """redis-server or redis-cli is missing."""


def _command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one command in RESP to ``127.0.0.1:port``; the raw reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        chunks = []
        sock.settimeout(timeout)
        while True:
            chunk = sock.recv(65536)
            chunks.append(chunk)
            reply = b"".join(chunks)
            if not chunk or _complete(reply):
                return reply


def _complete(reply: bytes) -> bool:
    if reply[:1] in (b"+", b"-", b":"):
        return reply.endswith(b"\r\n")
    if reply[:1] == b"$":
        head, _, rest = reply.partition(b"\r\n")
        size = int(head[1:])
        return size < 0 or len(rest) >= size + 2
    return False


class RedisClusterServers:
    """Six redis-server processes forming a cluster of 3 masters and 3
    replicas (``cluster-node-timeout`` short, so a failover takes about a
    second or two)."""

    def __init__(
        self, directory: Path, *, masters: int = 3, node_timeout_ms: int = 1000
    ) -> None:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if server is None or cli is None:
            raise ClusterUnavailable(
                "redis-server/redis-cli are not on PATH (apt-get install redis-server)"
            )
        self.server = server
        self.cli = cli
        self.directory = directory
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self.bus_ports: dict[int, int] = {}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node as a seed."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+cluster://{seeds}"

    def _spawn(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(self.bus_ports[port]),
            "--cluster-config-file",
            str(node_dir / "nodes.conf"),
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--repl-diskless-sync-delay",
            "0",
            "--logfile",
            str(node_dir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(node_dir),
        ]
        self.processes[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _wait_ping(self, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            proc = self.processes[port]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server :{port} exited with {proc.returncode}"
                )
            try:
                if _command(port, "PING", timeout=0.2).startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server :{port} did not answer PING in time")

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the nodes, create the cluster, wait for ``cluster_state:ok``
        on every node and for every master to have its replica."""
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _start(self, deadline: float) -> None:
        self.ports = [free_port() for _ in range(self.masters * 2)]
        # The bus port (default: port + 10000) may not exist for a high free
        # port: pick it explicitly.
        self.bus_ports = {port: free_port() for port in self.ports}
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            self._wait_ping(port, deadline)
        created = subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=max(deadline - time.monotonic(), 1.0),
        )
        if created.returncode != 0:
            raise RuntimeError(
                "redis-cli --cluster create failed: "
                + created.stdout.decode(errors="replace")[-2000:]
            )
        self.wait_ok(deadline=deadline)

    def info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of one node as a dict."""
        reply = _command(port, "CLUSTER", "INFO").decode(errors="replace")
        fields = {}
        for line in reply.splitlines()[1:]:
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        return fields

    def nodes(self, port: int) -> list[list[str]]:
        """``CLUSTER NODES`` of one node, one list of fields per node."""
        reply = _command(port, "CLUSTER", "NODES").decode(errors="replace")
        return [line.split() for line in reply.splitlines()[1:] if line.strip()]

    def replicas_synced(self) -> bool:
        """Every live replica has its link to its master up (a replica that
        never synced cannot be promoted)."""
        for port in self.alive():
            reply = _command(port, "INFO", "replication").decode(errors="replace")
            if "role:slave" in reply and "master_link_status:up" not in reply:
                return False
        return True

    def alive(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def master_ports(self) -> list[int]:
        """Ports of the masters that are up, as the live nodes see them."""
        port = self.alive()[0]
        found = []
        for fields in self.nodes(port):
            flags = fields[2].split(",")
            if "master" in flags and "fail" not in flags and "fail?" not in flags:
                found.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(p for p in found if p in self.alive())

    def master_of(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        port = self.alive()[0]
        for fields in self.nodes(port):
            if "master" not in fields[2].split(","):
                continue
            for span in fields[8:]:
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no master serves slot {slot}")

    def wait_ok(self, *, deadline: float) -> None:
        """Until every live node says ``cluster_state:ok`` with every slot
        assigned and ok, there are ``masters`` masters and every replica is
        in sync with its master."""
        last = ""
        while time.monotonic() < deadline:
            try:
                infos = [self.info(port) for port in self.alive()]
                if (
                    all(
                        i.get("cluster_state") == "ok"
                        and i.get("cluster_slots_ok") == "16384"
                        for i in infos
                    )
                    and len(self.master_ports()) == self.masters
                ):
                    return
                last = repr(infos[0])
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ok in time: {last[-500:]}")

    def kill(self, port: int) -> None:
        """SIGKILL one node."""
        proc = self.processes[port]
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
