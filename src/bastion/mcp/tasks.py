"""The tasks extension (io.modelcontextprotocol/tasks, SEP-2663) on 2026-07-28: a tool call that takes a while
becomes a task the client polls, instead of a request held open.

A tool registered with `task_support="optional"` or `"required"`, called by a client that declares the extension
(in the request's `_meta` client capabilities), starts like any call. If it answers within IMMEDIATE_SECONDS, or
asks the client something first, the answer is the ordinary one (a result, or an input_required round). Past
that, the call becomes a task: the client gets a CreateTaskResult at once (`resultType: "task"`, `taskId`,
`status: "working"`, times, `ttlMs`, `pollIntervalMs`), and the tool goes on in the background.

  tasks/get      status and metadata; the tool's result inlined once `completed` (a tool error is completed with
                 `isError`), a JSON-RPC error once `failed`; while the tool waits for the client, `input_required`
                 with the pending `inputRequests`
  tasks/update   answers (`inputResponses`) to pending requests, any subset: once every one is answered, the tool
                 runs again with them (as a multi-round-trip request would)
  tasks/cancel   stops it (`cancelled`); a finished task is left as it is

Each answers `{resultType: "complete"}` (tasks/get with the task beside it); an unknown task, or another caller's,
is -32602. A client that did not declare the extension gets -32021 from tasks/*, the ordinary call from an
optional tool, and -32021 from a required one. Tasks live in this process, for `ttlMs` after their last change
(at most MAX_TASKS at once, the oldest finished ones dropped first; running ones are never pushed out): several
instances need the client to come back to the one that started it. A caller with MAX_RUNNING_PER_CALLER tasks
still running gets ordinary answers (its call waited for) until some finish; on 2025-11-25, where it asked for a
task, a -32029 refusal (HTTP 429).

2025-11-25 defines tasks its own way (experimental there), served too: the client asks for one with a `task`
param on tools/call and gets `{task: {...}}` at once; `tasks/get` says how it goes, `tasks/result` waits for its
end and answers the tool's result (with `_meta` io.modelcontextprotocol/related-task), `tasks/list` lists the
caller's, `tasks/cancel` stops one (a finished one is -32602). What such a task's tool asks the client waits,
the task `input_required`, for a tasks/result request, whose stream carries it to the client and the answer back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .context import InputRequired, ToolError
from .errors import INTERNAL_ERROR, INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY, McpError
from .exchange import Exchange
from .middleware import RateLimited

EXTENSION = "io.modelcontextprotocol/tasks"
IMMEDIATE_SECONDS = 0.1  # a call that answers within this is answered as an ordinary call
TTL_MS = 600_000
POLL_INTERVAL_MS = 500
MAX_TASKS = 10_000
MAX_RUNNING_PER_CALLER = 100  # one caller cannot fill the table and push everyone else's tasks out
POLL_RETRY_SECONDS = 5  # when a caller at its limit may ask for a task again
TERMINAL = frozenset({"completed", "failed", "cancelled"})

Run = Callable[[Exchange], Awaitable[dict[str, Any]]]


def declared(ex: Exchange) -> bool:
    """Whether the request's client declared the tasks extension."""
    extensions = ex.client_capabilities.get("extensions")
    return isinstance(extensions, dict) and EXTENSION in extensions


def missing_extension() -> McpError:
    return McpError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"this request needs the client to declare the {EXTENSION} extension",
        {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Task:
    task_id: str
    owner: tuple[str, str] | None  # (subject, client id) of the caller that started it
    run: Run
    exchange: Exchange
    status: str = "working"
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    touched: float = field(default_factory=time.monotonic)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # input requests not yet answered
    answers: dict[str, Any] = field(default_factory=dict)
    worker: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set once terminal (tasks/result waits on it)
    # 2025-11-25: what the tool asks the client, waiting for a tasks/result request to carry it.
    questions: asyncio.Queue[tuple[str, dict[str, Any], asyncio.Future[Any]]] = field(default_factory=asyncio.Queue)

    def changed(self, status: str) -> None:
        self.status = status
        self.updated_at = _now()
        self.touched = time.monotonic()
        if status in TERMINAL:
            self.ended.set()

    def v1(self) -> dict[str, Any]:
        """The task as 2025-11-25 describes one (`ttl` and `pollInterval`, in milliseconds)."""
        return {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttl": TTL_MS,
            "pollInterval": POLL_INTERVAL_MS,
        }

    def envelope(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttlMs": TTL_MS,
            "pollIntervalMs": POLL_INTERVAL_MS,
        }


class Tasks:
    def __init__(self) -> None:
        self._tasks: OrderedDict[str, Task] = OrderedDict()

    # --- tools/call --------------------------------------------------------------------------------------
    async def call(self, ex: Exchange, run: Run) -> dict[str, Any]:
        """Run a task-supporting tool's call: its answer if it comes at once, else a CreateTaskResult."""
        work = asyncio.ensure_future(run(ex))
        try:
            done, _ = await asyncio.wait({work}, timeout=IMMEDIATE_SECONDS)
        except asyncio.CancelledError:  # the caller went away before it became a task: so does the call
            work.cancel()
            raise
        if done:
            return work.result()  # a result, or InputRequired / McpError raised for the ordinary answer
        owner = _owner(ex)
        if not self._room_for(owner):  # no room for another task of this caller's: the call is waited for
            return await work
        task = Task(secrets.token_urlsafe(18), owner, run, ex)
        ex.send = _dropped  # the HTTP answer is the CreateTaskResult: what the tool says later has nowhere to go
        self._tasks[task.task_id] = task
        task.worker = asyncio.ensure_future(self._follow(task, work))
        return {**task.envelope(), "resultType": "task"}

    async def _follow(self, task: Task, work: asyncio.Future[dict[str, Any]]) -> None:
        """Wait for the tool and record how it ended."""
        try:
            result = await work
        except InputRequired as asked:
            task.pending = dict(asked.requests)
            task.changed("input_required")
            return
        except McpError as exc:
            task.error = exc.to_error()
            task.changed("failed")
            return
        except asyncio.CancelledError:
            if task.status != "cancelled":
                task.changed("cancelled")
            work.cancel()
            raise
        except Exception as exc:
            task.error = {"code": INTERNAL_ERROR, "message": f"the task failed: {type(exc).__name__}"}
            task.changed("failed")
            return
        task.result = result
        task.changed("completed")

    # --- tasks/* -----------------------------------------------------------------------------------------
    def get(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        task = self._find(ex, params)
        detailed = task.envelope()
        if task.status == "completed" and task.result is not None:
            detailed["result"] = task.result
        elif task.status == "failed" and task.error is not None:
            detailed["error"] = task.error
        elif task.status == "input_required":
            detailed["inputRequests"] = task.pending
        return detailed

    def update(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        task = self._find(ex, params)
        responses = params.get("inputResponses")
        if not isinstance(responses, dict):
            raise McpError(INVALID_PARAMS, "inputResponses must be an object")
        if task.status != "input_required":
            return {}  # nothing is asked: late or repeated answers change nothing
        for key in list(task.pending):
            if key in responses:
                task.answers[key] = responses[key]
                del task.pending[key]
        if not task.pending:  # everything asked is answered: the tool runs again with all its answers
            again = _rerun_exchange(task.exchange, task.answers)
            task.changed("working")
            task.worker = asyncio.ensure_future(self._follow(task, asyncio.ensure_future(task.run(again))))
        return {}

    def cancel(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        task = self._find(ex, params)
        if task.status not in TERMINAL:
            _stop(task)
        return {}

    def _find(self, ex: Exchange, params: dict[str, Any]) -> Task:
        if not declared(ex):
            raise missing_extension()
        return self._lookup(params, _owner(ex))

    def _lookup(self, params: dict[str, Any], owner: tuple[str, str] | None) -> Task:
        """The task `params` name, if it is `owner`'s (another caller's task is as unknown as none)."""
        self._expire()
        task_id = params.get("taskId")
        task = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or task.owner != owner:
            raise McpError(INVALID_PARAMS, "unknown taskId")
        return task

    def _room_for(self, owner: tuple[str, str] | None) -> bool:
        """Whether another task may start for `owner`: fewer than MAX_RUNNING_PER_CALLER of theirs still running,
        and a place in the table (the oldest finished tasks make way; running ones are never pushed out)."""
        self._expire()
        running = sum(1 for task in self._tasks.values() if task.owner == owner and task.status not in TERMINAL)
        if running >= MAX_RUNNING_PER_CALLER:
            return False
        if len(self._tasks) >= MAX_TASKS:
            finished = [key for key, kept in self._tasks.items() if kept.status in TERMINAL]
            for key in finished[: len(self._tasks) - MAX_TASKS + 1]:
                del self._tasks[key]
        return len(self._tasks) < MAX_TASKS

    def _expire(self) -> None:
        limit = time.monotonic() - TTL_MS / 1000
        for key in [key for key, task in self._tasks.items() if task.touched < limit]:
            task = self._tasks.pop(key)
            if task.worker is not None and task.status not in TERMINAL:
                task.worker.cancel()

    # --- 2025-11-25 ----------------------------------------------------------------------------------------
    def start_v1(self, ex: Exchange, run: Run) -> dict[str, Any]:
        """A task-augmented tools/call (its `task` param): the task, at once. What the tool then asks the client
        waits (the task `input_required`) for a tasks/result request, on whose stream it is put to the client."""
        if not self._room_for(_owner_v1(ex)):
            raise RateLimited("too many tasks are running for this caller: wait for some to finish", POLL_RETRY_SECONDS)
        task = Task(secrets.token_urlsafe(18), _owner_v1(ex), run, ex)
        ex.send = _dropped
        ex.send_request = _asking_through(task)
        self._tasks[task.task_id] = task
        task.worker = asyncio.ensure_future(self._follow(task, asyncio.ensure_future(run(ex))))
        return {"task": task.v1()}

    def get_v1(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return self._find_v1(ex, params).v1()

    async def result_v1(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        """Wait for the task's end, carrying its questions to the client meanwhile; then its result."""
        task = self._find_v1(ex, params)
        while not task.ended.is_set():
            question = asyncio.ensure_future(task.questions.get())
            ending = asyncio.ensure_future(task.ended.wait())
            done, _ = await asyncio.wait({question, ending}, return_when=asyncio.FIRST_COMPLETED)
            ending.cancel()
            if question not in done:
                question.cancel()
                continue
            await _carry(ex, task, *question.result())
        related = {"io.modelcontextprotocol/related-task": {"taskId": task.task_id}}
        if task.status == "completed" and task.result is not None:
            return {**task.result, "_meta": {**(task.result.get("_meta") or {}), **related}}
        if task.status == "failed" and task.error is not None:
            raise McpError(task.error["code"], task.error["message"], task.error.get("data"))
        raise McpError(INVALID_PARAMS, f"the task ended {task.status}: it has no result")

    def list_v1(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        self._expire()
        owner = _owner_v1(ex)
        return {"tasks": [task.v1() for task in self._tasks.values() if task.owner == owner]}

    def cancel_v1(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        task = self._find_v1(ex, params)
        if task.status in TERMINAL:
            raise McpError(INVALID_PARAMS, f"the task is already {task.status}")
        _stop(task)
        return task.v1()

    def _find_v1(self, ex: Exchange, params: dict[str, Any]) -> Task:
        return self._lookup(params, _owner_v1(ex))

    def close(self) -> None:
        """Stop every task still running (the server is shutting down)."""
        for task in self._tasks.values():
            if task.worker is not None and not task.worker.done():
                task.worker.cancel()
        self._tasks.clear()


def _stop(task: Task) -> None:
    """Cancel a task that is still running (tasks/cancel)."""
    task.changed("cancelled")
    if task.worker is not None:
        task.worker.cancel()


def _owner(ex: Exchange) -> tuple[str, str] | None:
    principal = ex.principal
    return (principal.subject, principal.client_id) if principal is not None else None


def _owner_v1(ex: Exchange) -> tuple[str, str] | None:
    """A 2025 task's owner: the signed-in caller, or without authentication the session that started it."""
    return _owner(ex) or (("session", ex.session_id) if ex.session_id else None)


def _asking_through(task: Task) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """How a 2025-11-25 task's tool asks the client: the question waits for a tasks/result request to carry it."""

    async def ask(method: str, params: dict[str, Any]) -> Any:
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        task.questions.put_nowait((method, params, answered))
        task.changed("input_required")
        try:
            return await answered
        finally:
            if task.status == "input_required" and task.questions.empty():
                task.changed("working")

    return ask


async def _carry(ex: Exchange, task: Task, method: str, params: dict[str, Any], answered: asyncio.Future[Any]) -> None:
    """Put one of the task's questions to the client on this tasks/result request's stream."""
    if ex.send_request is None:
        answered.set_exception(ToolError(f"the client's tasks/result takes JSON only: {method} cannot reach it"))
        return
    try:
        answer = await ex.send_request(method, params)
    except asyncio.CancelledError:
        task.questions.put_nowait((method, params, answered))  # its client went away: the next tasks/result asks
        raise
    except Exception as exc:
        if not answered.done():
            answered.set_exception(exc)
        return
    if not answered.done():
        answered.set_result(answer)


def _rerun_exchange(ex: Exchange, answers: dict[str, Any]) -> Exchange:
    again = Exchange(
        ex.request_id,
        ex.method,
        ex.protocol_version,
        ex.modern,
        principal=ex.principal,
        client_capabilities=ex.client_capabilities,
        client_info=ex.client_info,
        log_level=ex.log_level,
        send=_dropped,
        input_responses=dict(answers),
        host=ex.host,
        root=ex.root,
        interactive=ex.interactive,
    )
    return again


async def _dropped(message: Any) -> None:
    """Where a background task's notifications go: its client polls tasks/get instead of listening."""
