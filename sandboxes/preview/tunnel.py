"""The pipe to an app in a sandbox, and what goes down it: ``Upstream`` names where
one request goes, ``open_tunnel`` asks the sandbox's agent for a raw byte pipe to
``127.0.0.1:{port}`` inside it, ``request_headers`` dresses the client's request
for the app. Shared by the HTTP and the WebSocket relay."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings

from container.agent.protocol import Channel, Tunnel, TunnelOpen
from sandboxes import callers
from sandboxes.agent.client import receive_message
from sandboxes.agentconn import open_agent
from sandboxes.errors import SandboxError
from sandboxes.lifecycle import ensure_running
from sandboxes.models import Sandbox

from .scope import Scope, http_scheme

# RFC 9110 7.6.1: connection-specific fields, never forwarded (plus those that
# Connection names).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the proxy itself; whatever the client sent under these names is dropped.
_OWN_HEADERS = frozenset(
    {b"host", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-for", b"forwarded"}
)
_WS_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
# An app that has not answered after this long may sit in a sandbox that another
# server process paused meanwhile (a kept-alive tunnel does not notice): make sure it
# runs, once, and keep waiting on the same connection.
NUDGE_AFTER = 2.0


class PortClosed(Exception):
    """Nothing listens on the port inside the sandbox."""


@dataclass(frozen=True)
class Upstream:
    """Where one request goes: the app on ``port`` in ``sandbox``, asked for ``path``
    (path and query) by a client that addressed ``host``. ``drop_headers`` are not
    forwarded; ``response_headers`` are added to the app's answer. ``admission``, if
    any, is asked again while a WebSocket stays open: the close code to end it with
    once the caller may no longer open the port, or None while it still may."""

    sandbox: Sandbox
    port: int
    path: str
    host: str
    drop_headers: frozenset[bytes] = frozenset()
    response_headers: tuple[tuple[bytes, bytes], ...] = ()
    admission: Callable[[], Awaitable[int | None]] | None = None


def connection_listed(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The header names a ``Connection`` header lists (hop-by-hop too)."""
    listed: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            listed |= {t.strip().lower() for t in value.split(b",")}
    return listed


def request_headers(
    scope: Scope, upstream: Upstream, *, websocket: bool = False
) -> list[tuple[bytes, bytes]]:
    """The client's headers minus hop-by-hop ones and the IDE's cookies, plus X-Forwarded-*."""
    skip = HOP_BY_HOP | _OWN_HEADERS | upstream.drop_headers
    skip |= connection_listed(list(scope.get("headers", ())))
    if websocket:
        skip |= _WS_HANDSHAKE
    ide_cookies = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, callers.PREVIEW_COOKIE}
    headers = [(b"host", f"localhost:{upstream.port}".encode())]
    for key, value in scope.get("headers", ()):
        key = key.lower()
        if key in skip:
            continue
        if key == b"cookie":
            kept = [
                part.strip()
                for part in value.split(b";")
                if part.strip()
                and part.strip().partition(b"=")[0].decode("latin-1").strip() not in ide_cookies
            ]
            if not kept:
                continue
            value = b"; ".join(kept)
        headers.append((key, value))
    client = scope.get("client") or ("", 0)
    headers += [
        (b"x-forwarded-host", upstream.host.encode("latin-1")),
        (b"x-forwarded-proto", http_scheme(scope).encode()),
        (b"x-forwarded-for", str(client[0] or "").encode()),
    ]
    return headers


async def open_tunnel(sandbox: Sandbox, port: int, first_bytes: bytes = b"") -> Channel:
    """A raw byte pipe to ``port`` in the sandbox (waking it if needed).

    ``first_bytes`` go out right behind the request, before the agent's answer: the
    agent pipes whatever follows the request once connected (and drops it if nothing
    listens), which saves a round trip per preview request.
    """
    channel = await open_agent(sandbox, Tunnel(port=port))
    try:
        if first_bytes:
            channel.writer.write(first_bytes)
        reply = await receive_message(channel)
    except SandboxError as exc:
        await channel.close()
        if exc.code == "connection_refused":
            raise PortClosed() from None
        raise
    except BaseException:
        await channel.close()
        raise
    if not isinstance(reply, TunnelOpen):
        await channel.close()
        raise SandboxError(f"unexpected answer to tunnel: {reply.type}")
    return channel


async def nudge(sandbox: Sandbox) -> None:
    """Make sure the sandbox runs (see ``NUDGE_AFTER``); a failure is the relay's to see."""
    with contextlib.suppress(SandboxError):
        await ensure_running(sandbox)
