"""What the preview modules read from an ASGI scope: its Host, the scheme the
browser used, and the request's path as the app in the sandbox is asked for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from sandboxes import callers

# As asgiref and ide/daphne_internals.py type them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def host_header(scope: Scope) -> str:
    return callers.header(scope, b"host")


def http_scheme(scope: Scope) -> str:
    """http or https: the WebSocket schemes named as the page's scheme."""
    scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def request_path(scope: Scope, raw_path: bytes) -> str:
    """``raw_path`` (or the scope's path, quoted) and the query: the request-target."""
    path = raw_path.decode("latin-1") if raw_path else quote(scope.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    query = scope.get("query_string") or b""
    return path + ("?" + query.decode("latin-1") if query else "")
