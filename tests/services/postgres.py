"""A PostgreSQL cluster of the tests' own: initdb into a temporary folder, one server on a free loopback port,
stopped and removed at the end. Nothing here uses a server that happens to run on the machine.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user (Debian's package makes
it) and the server runs as that user; otherwise as the current user. The server keeps fsync on, as a real one.

`postgres_cluster` is the session's one cluster (tests/store/conftest.py uses it); a test that needs a clean
database asks `cluster.database()` for a new one, which costs a CREATE DATABASE.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services.running import running
from tests.waiting import free_port, wait_until

SEARCHED = "/usr/lib/postgresql"  # Debian: /usr/lib/postgresql/<version>/bin


def binaries() -> Path:
    """The folder holding initdb and postgres: the newest Debian version, or the one on PATH."""
    versions = sorted(
        (p for p in Path(SEARCHED).glob("*/bin") if (p / "initdb").is_file() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: scripts/setup installs Debian's postgresql package")


class PostgresCluster:
    """One data folder and, while started, one server process on 127.0.0.1:`port`."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="bastion-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            owner = pwd.getpwnam("postgres")
            self._as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.socket_dir.mkdir()
        if self._as:
            os.chown(self.socket_dir, self._as["user"], self._as["group"])
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                *["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            ]
        )

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, cwd=self.root, check=False, **self._as)
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server (on the port it had before, after a stop) and wait until it accepts connections."""
        if self.process is not None:
            return
        first = not self.port
        for _ in range(5):  # another process may take a free port between the probe and the bind
            self.port = free_port() if first else self.port
            log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server writes to it while it runs
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), *self._settings()],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **self._as,
            )
            log.close()
            if self._wait_ready():
                return
            self.process = None
        raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}")

    def _settings(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            "max_connections": "300",
            "log_min_messages": "warning",
        }
        return [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]

    def _wait_ready(self) -> bool:
        """Poll until the server accepts a query (True), or it exited (False)."""
        process = self.process
        assert process is not None

        def ready() -> bool:
            if process.poll() is not None:
                return True
            isready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                capture_output=True,
                check=False,
            )
            return isready.returncode == 0

        wait_until(ready, f"PostgreSQL accepting connections on port {self.port}")
        return process.poll() is None

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, open transactions rolled back); waits for the exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        self.process = process
        self.resume()  # a paused server cannot act on the signal
        self.process = None
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def processes(self) -> list[int]:
        """The server and its children (each backend is a process group of its own: signal them one by one)."""
        if self.process is None:
            return []
        server = self.process.pid
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                # the field after the command's closing parenthesis: state, then the parent's pid
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server:
                    children.append(int(stat.parent.name))
        return [server, *children]

    def pause(self) -> None:
        """Freeze the server and every backend: connections stay open and nothing answers (a hung database)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output."""
        done = subprocess.run(
            [
                str(self.bin / "psql"),
                *["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                "-d",
                self.url(database),
                "-c",
                statement,
            ],
            capture_output=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def running_cluster() -> contextlib.AbstractContextManager[PostgresCluster]:
    return running(PostgresCluster())


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's one cluster, started on first use and removed at the end (also after failures)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A new, empty database on the session's cluster for one test; dropped afterwards."""
    url = postgres_cluster.database()
    yield url
    name = url.rsplit("/", 1)[1]
    postgres_cluster.start()  # a test may have left it stopped
    postgres_cluster.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
