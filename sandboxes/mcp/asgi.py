"""/mcp: the streamable HTTP transport of the MCP server, for programs only.

Only an API token (``Authorization: Bearer``) is accepted: a session cookie or no
credential is a 401, so a web page the user visits can never drive sandboxes
through this route with their login. A request a browser page started (an
``Origin`` other than this server's, or ``Sec-Fetch-Site`` cross-site) is a 403, and
a ``Host`` outside ALLOWED_HOSTS a 400 (DNS rebinding). Bodies are admitted from
their headers (``admit``) like the API's.

The session manager of the ``mcp`` package runs stateless: each request is served
on its own, so any server process can answer any request and none keeps per-client
state. Daphne has no ASGI lifespan, so the manager is started on the first request
(in the event loop that serves it) and lives as long as that loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.http.request import split_domain_port, validate_host
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from sandboxes import callers, ports
from sandboxes.api.asgi import Admission, admit_size
from sandboxes.api.auth import AuthedRequest
from sandboxes.api.ports import request_origin

from .server import ORIGIN, USER, mcp_server

PATH = "/mcp"


def body_limit() -> int:
    """Room for tool arguments up to API_MAX_JSON_BODY, which a tool refuses itself
    (a coded tool error) rather than the transport (a bare 413)."""
    return 2 * int(settings.API_MAX_JSON_BODY) + 64 * 1024


def is_mcp(path: str) -> bool:
    return path in (PATH, PATH + "/")


Refusal = tuple[int, str, str]
NO_TOKEN: Refusal = (
    401,
    "token_required",
    "/mcp takes an API token only: send 'Authorization: Bearer <token>' (a session cookie "
    "is not accepted); create a token on the account page.",
)
NOT_ALLOWED: Refusal = (
    405,
    "method_not_allowed",
    "/mcp accepts POST: this server keeps no MCP sessions, so there is no stream to GET "
    "and none to DELETE.",
)


def _browser_refusal(scope: Any) -> Refusal | None:
    host = callers.header(scope, b"host")
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return 400, "disallowed_host", f"The Host {host!r} is not one this server answers to."
    origin = callers.header(scope, b"origin")
    own = {f"{scheme}://{host}" for scheme in ("http", "https")}
    if origin and origin not in own and origin not in settings.CSRF_TRUSTED_ORIGINS:
        message = f"/mcp is for programs: a request from the web page at {origin} is refused."
        return 403, "cross_origin", message
    if callers.header(scope, b"sec-fetch-site") in ("cross-site", "same-site"):
        return 403, "cross_origin", "/mcp is for programs: a request from another site is refused."
    return None


async def authenticate(scope: Any) -> User | Refusal:
    """The token's user, or why the request is refused."""
    refused = _browser_refusal(scope)
    if refused is not None:
        return refused
    caller = await callers.scope_caller(scope, session=False)
    if caller.refusal is not None:
        return caller.refusal.status, caller.refusal.code, caller.refusal.message
    if caller.credential != "token" or not isinstance(caller.user, User):
        return NO_TOKEN
    return caller.user


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def admit(scope: Any) -> Admission:
    """Refuse a body from its headers: no valid token, a browser's request, too large."""
    by_size = admit_size(scope, body_limit(), "the /mcp body limit")
    outcome = await authenticate(scope)
    if isinstance(outcome, tuple):
        status, code, message = outcome
        return Admission(by_size.limit, by_size.too_large, (status, _error_body(code, message)))
    return by_size


def _origin(scope: Any) -> ports.Origin:
    """Preview URLs use the scheme and port this server was reached on, as the API's."""
    return request_origin(cast(AuthedRequest, callers.headers_request(scope)))


class McpApp:
    """The ASGI application of /mcp."""

    def __init__(self) -> None:
        self._managers: dict[asyncio.AbstractEventLoop, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        outcome = await authenticate(scope)
        if isinstance(outcome, tuple):
            await _refuse(send, *outcome)
            return
        if scope["method"] != "POST":
            await _refuse(send, *NOT_ALLOWED)
            return
        manager = await self._manager()
        scope = {**scope, USER: outcome, ORIGIN: _origin(scope)}
        await manager.handle_request(scope, receive, send)

    async def _manager(self) -> StreamableHTTPSessionManager:
        loop = asyncio.get_running_loop()
        if loop not in self._managers:
            ready: asyncio.Future[StreamableHTTPSessionManager] = loop.create_future()
            self._managers[loop] = ready
            task = loop.create_task(self._serve(loop, ready))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        manager: StreamableHTTPSessionManager = await asyncio.shield(self._managers[loop])
        return manager

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[StreamableHTTPSessionManager]
    ) -> None:
        """Run the session manager for as long as ``loop`` runs; should it fail, the
        next request starts another."""
        try:
            manager = StreamableHTTPSessionManager(
                app=mcp_server(), stateless=True, max_request_body_size=body_limit()
            )
            async with manager.run():
                ready.set_result(manager)
                await asyncio.Event().wait()
        finally:
            self._managers.pop(loop, None)
            if not ready.done():
                ready.set_exception(RuntimeError("The MCP session manager did not start."))


async def _refuse(send: Any, status: int, code: str, message: str) -> None:
    body = _error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="sandbox-ide"'))
    if status == 405:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
