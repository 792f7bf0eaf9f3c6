"""The ASGI layer in front of the whole application: preview hosts and the path
fallback are served here and never reach Django's URL routing (nor
``ALLOWED_HOSTS``); every other request passes on, with the scheme and port it
came in on noted for the preview URLs the API hands out."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http.request import validate_host

from sandboxes import callers, ports

from . import private
from .fallback import FALLBACK_PREFIX, fallback_upstream
from .hosts import is_preview_domain, parse_preview_host, split_host
from .http_relay import proxy_http
from .pages import refuse
from .scope import Receive, Scope, Send, host_header, http_scheme, request_path
from .tunnel import Upstream
from .ws_relay import proxy_websocket


class PreviewMiddleware:
    """Wraps the whole ASGI application (HTTP and WebSocket)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = host_header(scope)
        name, host_port = split_host(host)
        upstream: Upstream | None
        if is_preview_domain(name):
            upstream = await _preview_upstream(scope, send, host, name)
        elif scope["path"].startswith(FALLBACK_PREFIX) and validate_host(
            name, settings.ALLOWED_HOSTS
        ):
            upstream = await fallback_upstream(scope, send)
        else:
            token = ports.request_origin.set((http_scheme(scope), host_port))
            try:
                await self.app(scope, receive, send)
            finally:
                ports.request_origin.reset(token)
            return
        if upstream is not None:
            await proxy(scope, receive, send, upstream)


async def proxy(scope: Scope, receive: Receive, send: Send, upstream: Upstream) -> None:
    """Serve one HTTP request or WebSocket through a tunnel to ``upstream``."""
    if scope["type"] == "websocket":
        await proxy_websocket(scope, receive, send, upstream)
    else:
        await proxy_http(scope, receive, send, upstream)


async def _preview_upstream(scope: Scope, send: Send, host: str, name: str) -> Upstream | None:
    """Where a request to preview host ``name`` goes: the token is checked against the
    exposed port (constant time), then the caller against its visibility, unless it
    is public. None when it has been answered instead."""
    target = parse_preview_host(name)
    exposed = await ports.find_exposed_recent(target.sandbox_id, target.port) if target else None
    if (
        target is None
        or exposed is None
        or not hmac.compare_digest(exposed.token.encode(), target.token.encode())
    ):
        await refuse(
            scope,
            send,
            404,
            "No preview here",
            "This preview link is not valid: the port is not exposed (any more), or the "
            "link was mistyped. Ask the sandbox's owner for a fresh link.",
        )
        return None
    if ports.visibility(exposed) != ports.Visibility.PUBLIC and not await private.admitted(
        scope, send, host, name, exposed
    ):
        return None
    path = request_path(scope, scope.get("raw_path") or b"")
    watch = None
    if scope["type"] == "websocket":  # asked again while it stays open
        watch = private.admission(target, callers.preview_cookie_user(scope, name))
    return Upstream(exposed.sandbox, exposed.port, path, host, admission=watch)
