"""MCP servers run as local commands ([[gateway.servers]] with `command`): one process per signed-in user, never
shared between users, spoken to over its stdin and stdout (newline-delimited JSON-RPC, 2025-11-25).

- A user's process starts on their first call, with only the environment the settings give it (`env`, `env_from`,
  the user's upstream tokens in `upstream_env`, and PATH, HOME and LANG), in a process group of its own.
- It is stopped when idle for `idle_seconds`; when `max_processes` run, the idlest is stopped to make room (and a
  call finds no room only if every process is busy).
- A process that exits or crashes fails its calls in flight with a clear error; the next call starts another.
- At shutdown every process group is sent SIGTERM, then SIGKILL after a grace period.
- Its stderr goes to Bastion's log at debug level (bounded lines), so that a full pipe never blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..mcp import versions
from ..mcp.errors import METHOD_NOT_FOUND, McpError
from ..mcp.exchange import Exchange
from ..settings.gateway import GatewayServer
from .client import (
    CLIENT_CAPABILITIES,
    CLIENT_INFO,
    MAX_ANSWER_BYTES,
    BackendUnavailable,
    McpClient,
    OnMessage,
    response_to,
    result_of,
    upstream_token,
)

log = logging.getLogger("bastion")
STOP_GRACE_SECONDS = 5.0
REAP_EVERY_SECONDS = 5.0
KEPT_ENVIRONMENT = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")


class StdioClient:
    """One process of a stdio MCP server."""

    modern = False

    def __init__(
        self, command: list[str], env: dict[str, str], name: str, timeout: float, credentials: str = ""
    ) -> None:
        self.command = command
        self.env = env
        self.name = name
        self.timeout = timeout
        self.credentials = credentials  # a digest of the users' tokens in `env`: a renewed one means a new process
        self.capabilities: dict[str, Any] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.last_used = time.monotonic()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], OnMessage | None, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._starting = asyncio.Lock()
        self._asking: set[asyncio.Future[None]] = set()

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def connect(self) -> dict[str, Any]:
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                start_new_session=True,  # a process group of its own: stopped whole, children included
                limit=MAX_ANSWER_BYTES,
            )
        except OSError as exc:
            raise BackendUnavailable(f"could not run {self.command[0]!r} ({exc.strerror or exc})") from None
        self._tasks = [
            asyncio.create_task(self._read_answers(), name=f"bastion-stdio-{self.name}"),
            asyncio.create_task(self._read_errors(), name=f"bastion-stdio-{self.name}-stderr"),
        ]
        params = {
            "protocolVersion": versions.LATEST_LEGACY,
            "capabilities": CLIENT_CAPABILITIES,
            "clientInfo": CLIENT_INFO,
        }
        result = await self._call("initialize", params, None)
        if result.get("protocolVersion") not in versions.LEGACY:
            await self.close()
            raise BackendUnavailable(f"it offered protocol version {result.get('protocolVersion')!r}")
        capabilities = result.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    async def request(self, method: str, params: dict[str, Any], on_message: OnMessage | None = None) -> dict[str, Any]:
        self.last_used = time.monotonic()
        if not self.running:
            async with self._starting:
                if not self.running:
                    await self.close()
                    await self.connect()
        return await self._call(method, params, on_message)

    async def respond(self, message_id: Any, answer: dict[str, Any] | McpError) -> None:
        with contextlib.suppress(BackendUnavailable):
            await self._write(response_to(message_id, answer))

    async def close(self) -> None:
        """Stop the process group: SIGTERM, then SIGKILL if it has not ended within the grace period."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        for task in self._tasks:
            task.cancel()
        self._fail_pending("it was stopped")

    # --- the wire ---------------------------------------------------------------------------------------
    async def _call(self, method: str, params: dict[str, Any], on_message: OnMessage | None) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        self._pending[message_id] = (future, on_message, token)
        try:
            await self._write({"jsonrpc": "2.0", "id": message_id, "method": method, "params": params})
            async with asyncio.timeout(self.timeout):
                answer = await future
        except TimeoutError:
            raise BackendUnavailable(f"no answer within {self.timeout:g} s") from None
        except asyncio.CancelledError:
            with contextlib.suppress(BackendUnavailable):
                cancelled = {"requestId": message_id, "reason": "the client cancelled the request"}
                await self._write({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancelled})
            raise
        finally:
            self._pending.pop(message_id, None)
            self.last_used = time.monotonic()
        return result_of(answer)

    async def _write(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise BackendUnavailable("its process is not running")
        try:
            process.stdin.write(orjson.dumps(message) + b"\n")
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise BackendUnavailable("its process closed its input") from None

    async def _read_answers(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        try:
            while True:
                line = await process.stdout.readline()
                if not line:
                    break
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.debug("gateway server %s wrote a line that is not JSON", self.name)
                    continue
                if isinstance(message, dict):
                    await self._received(message)
        except (ValueError, asyncio.LimitOverrunError):  # a line beyond the bound: the process is not trusted further
            log.warning("gateway server %s wrote a line longer than %d bytes; stopping it", self.name, MAX_ANSWER_BYTES)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        code = await process.wait()
        self._fail_pending(f"its process ended (exit status {code})")

    async def _received(self, message: dict[str, Any]) -> None:
        message_id = message.get("id")
        if "method" not in message:
            pending = self._pending.get(message_id) if isinstance(message_id, int) else None
            if pending is not None and not pending[0].done():
                pending[0].set_result(message)
            return
        params = message.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        # Progress goes to the call that asked for it; anything else to every call in flight (all the same user's).
        targets = [on for _, on, asked in self._pending.values() if on and (token is None or asked == token)]
        if "id" in message:
            # A question for the caller may take a while: it is asked aside, so other calls' answers keep coming.
            if not targets:
                await self.respond(message_id, McpError(METHOD_NOT_FOUND, "no call in flight to ask the client for"))
                return
            asking: asyncio.Future[None] = asyncio.ensure_future(targets[0](message))
            self._asking.add(asking)
            asking.add_done_callback(self._asking.discard)
            return
        for on_message in targets:
            await on_message(message)

    async def _read_errors(self) -> None:
        process = self.process
        assert process is not None and process.stderr is not None
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
            while line := await process.stderr.readline():
                log.debug("gateway server %s: %s", self.name, line[:2000].decode("utf-8", "replace").rstrip())

    def _fail_pending(self, why: str) -> None:
        for future, _, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(BackendUnavailable(why))


class ProcessPool:
    """One StdioClient per caller (by subject; an unauthenticated server's callers share one), started on demand,
    stopped when idle, at most `max_processes` at once."""

    def __init__(
        self,
        make: Callable[[Any], Awaitable[StdioClient]],
        idle_seconds: float,
        max_processes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make = make
        self.idle_seconds = idle_seconds
        self.max_processes = max_processes
        self.clock = clock
        self.clients: dict[str, StdioClient] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def client_for(self, principal: Any, credentials: str = "") -> StdioClient:
        """The caller's process; a new one if its tokens (their digest: `credentials`) were renewed since it
        started and no call is in flight on it."""
        key = getattr(principal, "subject", None) or ""
        async with self._lock:
            client = self.clients.get(key)
            if client is not None and client.credentials != credentials and not client.busy:
                await self.clients.pop(key).close()
                client = None
            if client is None:
                if len(self.clients) >= self.max_processes:
                    await self._make_room()
                client = self.clients[key] = await self.make(principal)
            if self._reaper is None or self._reaper.done():
                self._reaper = asyncio.create_task(self._reap_idle(), name="bastion-stdio-reaper")
        client.last_used = self.clock()
        return client

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        clients, self.clients = list(self.clients.values()), {}
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)

    async def _make_room(self) -> None:
        idle = [(client.last_used, key) for key, client in self.clients.items() if not client.busy]
        if not idle:
            raise BackendUnavailable(f"all {self.max_processes} of its processes are busy; try again shortly")
        _, key = min(idle)
        await self.clients.pop(key).close()

    async def _reap_idle(self) -> None:
        while self.clients:
            await asyncio.sleep(min(REAP_EVERY_SECONDS, self.idle_seconds))
            now = self.clock()
            async with self._lock:
                stale = [k for k, c in self.clients.items() if not c.busy and now - c.last_used >= self.idle_seconds]
                for key in stale:
                    await self.clients.pop(key).close()


class PerUser:
    """The Connections of a server run as a command: each caller's own process; a process of Bastion's own (no
    user's token in it) lists what the server offers, at start and when a process says its tools changed."""

    refresh_every: float | None = None
    watched: McpClient | None = None  # each user's own process: it tells that user, during their calls

    def __init__(self, config: GatewayServer) -> None:
        self.config = config
        self.pool = ProcessPool(self._process_for, config.idle_seconds, config.max_processes)

    async def for_call(self, ex: Exchange) -> StdioClient:
        principal = ex.principal
        tokens = await self._tokens(principal) if principal is not None else {}
        return await self.pool.client_for(principal, _digest(tokens))

    async def for_listing(self) -> StdioClient:
        return await self._process_for(None)

    async def done_listing(self, client: Any) -> None:
        await client.close()

    async def close(self) -> None:
        await self.pool.close()

    async def _process_for(self, principal: Any) -> StdioClient:
        config = self.config
        env = process_environment(config.env, config.env_from)
        tokens = await self._tokens(principal) if principal is not None else {}
        env.update(tokens)
        assert config.command is not None  # (settings.check: url or command)
        return StdioClient([config.command, *config.args], env, config.name, config.timeout_seconds, _digest(tokens))

    async def _tokens(self, principal: Any) -> dict[str, str]:
        """The caller's current upstream tokens, by the variable each goes in (renewed first when expired)."""
        return {name: await upstream_token(principal, provider) for name, provider in self.config.upstream_env.items()}


def _digest(tokens: dict[str, str]) -> str:
    """Which tokens a process was started with, without keeping them."""
    if not tokens:
        return ""
    return hashlib.sha256(orjson.dumps(tokens, option=orjson.OPT_SORT_KEYS)).hexdigest()


def process_environment(configured: dict[str, str], from_bastion: dict[str, str]) -> dict[str, str]:
    """What a process's environment holds besides users' tokens: a few of Bastion's own variables (where programs
    are, a home), the configured values, and the configured names read from Bastion's environment."""
    env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    env.update(configured)
    env.update({name: os.environ[source] for name, source in from_bastion.items() if source in os.environ})
    return env
