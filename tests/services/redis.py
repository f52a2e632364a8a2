"""Redis servers of the tests' own: redis-server processes in temporary folders on free loopback ports, stopped
and removed at the end. Nothing here uses a server that happens to run on the machine.

- `RedisServer`: one server, append-only file on (`--appendonly yes`, no RDB snapshots), so that a test can stop
  it and start it again on the same folder and find its records; `kill()` stands for a crash.
- `RedisCluster`: three masters with `--cluster-enabled yes`, joined by `redis-cli --cluster create` (no
  replicas), ready once every node says `cluster_state:ok`.

`redis_server` and `redis_cluster` are the session's ones (tests/store/conftest.py offers them); a test that
stops or kills a server starts its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.services.running import running
from tests.waiting import free_port, wait_until

CLUSTER_MASTERS = 3
# Loopback only; append-only file on and RDB snapshots off (the durability test restarts on the same folder).
SERVER = {
    "bind": "127.0.0.1",
    "protected-mode": "yes",
    "appendonly": "yes",
    "save": "",
    "daemonize": "no",
    "logfile": "redis.log",
}
CLUSTER = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf", "cluster-node-timeout": "2000"}


def flags(options: dict[str, str]) -> list[str]:
    return [part for name, value in options.items() for part in (f"--{name}", value)]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: scripts/setup installs Debian's redis-server package")
    return found


def ask(port: int, *command: str, seconds: float = 1.0) -> bytes:
    """Send one command (RESP) to 127.0.0.1:`port`; the first reply's bytes, b"" if nothing answers."""
    request = f"*{len(command)}\r\n".encode() + b"".join(
        f"${len(part.encode())}\r\n{part}\r\n".encode() for part in command
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds) as connection:
            connection.sendall(request)
            return connection.recv(65536)
    except OSError:
        return b""


class RedisServer:
    """One folder and, while started, one redis-server on 127.0.0.1:`port`."""

    def __init__(self, root: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        self.binary = _binary("redis-server")
        self.root = root or Path(tempfile.mkdtemp(prefix="bastion-redis-"))
        self.extra = extra
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (on the port it had before, after a stop or a kill) and wait until it answers PING."""
        if self.process is not None:
            return
        first = not self.port
        for _ in range(5):  # another process may take a free port between the probe and the bind
            self.port = free_port() if first else self.port
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--dir", str(self.root), *flags(SERVER), *self.extra],
                cwd=self.root,  # the log file too goes in the server's folder
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if self._wait_ready():
                return
            self.process = None
        raise RuntimeError(f"redis-server did not start: {self.log_tail()}")

    def _wait_ready(self) -> bool:
        process = self.process
        assert process is not None
        # A server still loading its append-only file answers -LOADING: not ready yet.
        wait_until(
            lambda: process.poll() is not None or ask(self.port, "PING") == b"+PONG\r\n",
            f"redis-server answering on port {self.port}",
        )
        return process.poll() is None

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its append-only file and exits; waits for the exit."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, a crash: no chance to flush anything."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def flush(self) -> None:
        """Empty every database (between tests sharing the session's server)."""
        if ask(self.port, "FLUSHALL") != b"+OK\r\n":
            raise RuntimeError(f"FLUSHALL failed on port {self.port}")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisCluster:
    """Three masters sharing the 16384 slots, no replicas."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bastion-redis-cluster-"))
        self.nodes: list[RedisServer] = []
        for i in range(CLUSTER_MASTERS):
            folder = self.root / f"node{i}"
            folder.mkdir()
            self.nodes.append(RedisServer(folder, tuple(flags(CLUSTER))))

    @property
    def url(self) -> str:
        """Any one node's address: the client learns the others from it."""
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
        if created.returncode:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout.decode(errors='replace')}")
        wait_until(self.ready, "every node of the Redis Cluster saying cluster_state:ok")

    def ready(self) -> bool:
        for node in self.nodes:
            info = ask(node.port, "CLUSTER", "INFO")
            if b"cluster_state:ok" not in info or f"cluster_known_nodes:{len(self.nodes)}".encode() not in info:
                return False
        return True

    def flush(self) -> None:
        for node in self.nodes:
            node.flush()

    def remove(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def running_server() -> contextlib.AbstractContextManager[RedisServer]:
    return running(RedisServer())


def running_cluster() -> contextlib.AbstractContextManager[RedisCluster]:
    return running(RedisCluster())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's single Redis, started on first use and removed at the end (also after failures)."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """The session's 3-master Redis Cluster, likewise."""
    with running_cluster() as cluster:
        yield cluster
