"""The 2026-07-28 era: every request stands alone, carrying its version, capabilities and client info in
`_meta`, and its method and target again in headers that must agree with the body."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import versions
from ..errors import INVALID_PARAMS, INVALID_REQUEST, McpError, method_not_found
from ..exchange import Exchange, progress_token
from ..headers import check_params, check_standard, mismatch
from ..jsonrpc import Notification, Request, notification_message, result_message
from ..notify import Broadcaster, Listener
from ..server import Server, check_modern_meta
from .reply import Reply, send_json
from .run import Runner
from .streams import enqueue, pump
from .wire import Receive, Send, reject

LISTEN_QUEUE = 1000


class ModernHandler:
    def __init__(self, server: Server, broadcaster: Broadcaster, runner: Runner, *, json_response: bool) -> None:
        self.server = server
        self.broadcaster = broadcaster
        self.runner = runner
        self.json_response = json_response

    async def post(
        self,
        message: Any,
        headers: dict[str, str],
        version: str,
        principal: Any,
        receive: Receive,
        send: Send,
        root: str = "",
    ) -> None:
        if not isinstance(message, Request):
            if isinstance(message, Notification):
                await send_json(send, 202, None)
            else:
                error = McpError(INVALID_REQUEST, "Bad Request: clients do not send responses in 2026-07-28")
                await reject(send, error)
            return
        try:
            meta = message.params.get("_meta")
            meta_version = meta.get(versions.META_PROTOCOL_VERSION) if isinstance(meta, dict) else None
            if isinstance(meta_version, str) and meta_version != version:
                raise mismatch("MCP-Protocol-Version header does not match _meta protocolVersion")
            _, caps, info, level = check_modern_meta(message.params)
            check_standard(headers, message.method, message.params)
            if message.method == "tools/call":
                self._check_param_headers(headers, message.params)
        except McpError as exc:
            await reject(send, exc, message.id)
            return
        if message.method == "server/discover":
            await send_json(send, 200, result_message(message.id, self.server.discover_result()))
            return
        if message.method == "subscriptions/listen":
            await self._listen(message, receive, send)
            return
        if not self.server.has_method(message.method) or message.method == "ping":
            await reject(send, method_not_found(message.method), message.id)
            return
        reply = Reply(send, allow_stream=not self.json_response)
        ex = Exchange(
            message.id,
            message.method,
            version,
            True,
            principal=principal,
            client_capabilities=caps,
            client_info=info,
            log_level=level,
            progress_token=progress_token(message.params),
            send=reply.event,
            host=headers.get("host"),
            root=root,
        )
        await self.runner.run(message, ex, reply, receive, None, host=headers.get("host"), root=root)

    def _check_param_headers(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        name = params.get("name")
        tool = self.server.registry.tools.get(name) if isinstance(name, str) else None
        if tool is not None and tool.header_params:
            check_params(headers, tool.header_params, params.get("arguments") or {})

    async def _listen(self, message: Request, receive: Receive, send: Send) -> None:
        """subscriptions/listen: a stream of the change notifications the client opted into."""
        wanted = message.params.get("notifications")
        if not isinstance(wanted, dict):
            await reject(send, McpError(INVALID_PARAMS, "notifications filter must be an object"), message.id)
            return
        lists = frozenset(
            k
            for k, flag in (
                ("tools", "toolsListChanged"),
                ("prompts", "promptsListChanged"),
                ("resources", "resourcesListChanged"),
            )
            if wanted.get(flag) is True
        )
        uris = wanted.get("resourceSubscriptions")
        resources = {u for u in uris if isinstance(u, str)} if isinstance(uris, list) else set()
        honored: dict[str, Any] = {f"{k}ListChanged": True for k in sorted(lists)}
        if resources:
            honored["resourceSubscriptions"] = sorted(resources)
        sub_meta = {versions.META_SUBSCRIPTION_ID: message.id}
        reply = Reply(send, allow_stream=True)
        await reply.start_stream()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=LISTEN_QUEUE)
        listener = Listener(enqueue(queue), lists, resources, sub_meta)
        await reply.event(
            notification_message(
                "notifications/subscriptions/acknowledged", {"notifications": honored, "_meta": sub_meta}
            )
        )
        self.broadcaster.add(listener)
        try:
            await pump(queue, reply, receive)
        finally:
            self.broadcaster.discard(listener)
