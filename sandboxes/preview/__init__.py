"""Preview URLs: an ASGI layer in front of the whole application.

A request whose ``Host`` is ``{port}-{id}-{token}.{PREVIEW_DOMAIN}`` never reaches
Django's URL routing (nor ``ALLOWED_HOSTS``): this layer checks the token against the
exposed port (constant time), wakes the sandbox and tunnels the request through the
sandbox's agent to ``127.0.0.1:{port}`` inside it, speaking HTTP/1.1 (with h11) or
WebSocket (with wsproto) over the raw tunnel. Bodies stream both ways one chunk at a
time: a chunk is read from the tunnel only once ``send`` of the previous one returned
(under Daphne, ide/daphne_flow.py makes ``send`` wait while the client's socket is
full), so memory stays flat whatever the size.

Lessons from jupyter-server-proxy's advisories are applied: the WebSocket upgrade is
authorised exactly like a plain request, and no error page reflects the host or the
path without escaping.

Other hosts pass through unchanged, except ``/preview/{id}/{port}/…`` on the IDE's
own host: the path-based fallback for deployments without wildcard DNS, owner-only
(see README, "API extensions").

Private ports additionally need the login of the owner or of someone who may look
at the sandbox (``classroom.access.can_view``: a course's teacher, a class it is
shared with). The preview host cannot see the IDE's session (a different origin, on
purpose), so it sends the browser once through ``/preview-auth/`` on the IDE origin,
which checks the session and sends it back to ``/__sandbox_preview_auth?ticket=…``
with a signed, one-minute ticket bound to the preview host and the user; this layer
then sets a host-only ``sandbox_preview`` cookie (signed, HttpOnly, SameSite=Lax,
naming the user) and never sees the IDE's session cookie. A viewer's cookie is
checked against ``can_view`` again every few seconds, so a revoked view stops
opening the preview even with a cookie already issued.

What the app answers cannot reach beyond its host: ``Set-Cookie`` loses ``Domain``
and cookies named like the server's are dropped (``_own_cookie``). Requests the
browser attaches a cookie to are checked for where they come from: a private
port's WebSocket must come from its own preview host, and session callers of the
path fallback pass the IDE's Origin and CSRF checks (``_browser_check_fails``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import h11
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.request import validate_host
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from container.agent.protocol import CHUNK, Channel, Tunnel, TunnelOpen
from sandboxes import callers, ports, services, wsauth
from sandboxes.agent.client import receive_message
from sandboxes.errors import SandboxError
from sandboxes.models import ExposedPort, Sandbox

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

AUTH_PATH = "/__sandbox_preview_auth"
COOKIE_NAME = callers.PREVIEW_COOKIE
TICKET_SALT = "sandboxes.preview.ticket"
TICKET_MAX_AGE = 60
FALLBACK_PREFIX = "/preview/"
# Response bytes handed to the server per send: whatever the tunnel has buffered, up
# to this. Larger sends mean fewer pause/resume rounds with the client's socket.
RELAY_CHUNK = 1024 * 1024

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
# A preview rendered on the IDE's own origin (the path fallback) runs in an opaque
# origin: it can neither read the IDE's cookies nor call its API as the owner.
_FALLBACK_CSP = (
    b"sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads "
    b"allow-popups-to-escape-sandbox"
)


class PortClosed(Exception):
    """Nothing listens on the port inside the sandbox."""


@dataclass(frozen=True)
class Target:
    sandbox_id: str
    port: int
    token: str


@functools.cache
def _host_pattern(domain: str) -> re.Pattern[str]:
    return re.compile(
        r"^(?P<port>[0-9]{1,5})-(?P<id>[a-z0-9]{12})-(?P<token>[a-z0-9]{16})\."
        + re.escape(domain)
        + r"$"
    )


def split_host(host: str) -> tuple[str, int | None]:
    """``name[:port]`` → (lower-case name, port)."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and (name.endswith("]") or ":" not in name):
        return name, int(port)
    return host, None


def parse_preview_host(name: str) -> Target | None:
    match = _host_pattern(settings.PREVIEW_DOMAIN).match(name)
    if match is None:
        return None
    port = int(match["port"])
    if not 1 <= port <= 65535:
        return None
    return Target(match["id"], port, match["token"])


def is_preview_domain(name: str) -> bool:
    domain = settings.PREVIEW_DOMAIN
    return name == domain or name.endswith("." + domain)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _http_scheme(scope: Scope) -> str:
    scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


# --------------------------------------------------------------------------- the layer


class PreviewMiddleware:
    """Wraps the whole ASGI application (HTTP and WebSocket)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        name, host_port = split_host(host)
        if is_preview_domain(name):
            await _serve_preview(scope, receive, send, host, name)
            return
        if scope["path"].startswith(FALLBACK_PREFIX) and validate_host(
            name, settings.ALLOWED_HOSTS
        ):
            await _serve_fallback(scope, receive, send)
            return
        token = ports.request_origin.set((_http_scheme(scope), host_port))
        try:
            await self.app(scope, receive, send)
        finally:
            ports.request_origin.reset(token)


async def _serve_preview(scope: Scope, receive: Receive, send: Send, host: str, name: str) -> None:
    target = parse_preview_host(name)
    exposed = await ports.find_exposed_recent(target.sandbox_id, target.port) if target else None
    if (
        target is None
        or exposed is None
        or not hmac.compare_digest(exposed.token.encode(), target.token.encode())
    ):
        await _refuse(
            scope,
            send,
            404,
            "No preview here",
            "This preview link is not valid: the port is not exposed (any more), or the "
            "link was mistyped. Ask the sandbox's owner for a fresh link.",
        )
        return
    if exposed.private:
        if scope["type"] == "http" and scope["path"] == AUTH_PATH:
            await _accept_ticket(scope, send, name)
            return
        if scope["type"] == "websocket" and not _preview_origin_allowed(scope):
            await send({"type": "websocket.close", "code": 4403})
            return
        user_id = callers.preview_cookie_user(scope, name)
        if user_id is None or not await _may_open_cached(user_id, exposed.sandbox):
            if scope["type"] == "http":
                await _redirect(send, _login_url(scope, host))
            else:
                await send({"type": "websocket.close", "code": 4403})
            return
    upstream = _upstream_target(scope, scope.get("raw_path") or b"")
    await proxy(scope, receive, send, exposed.sandbox, exposed.port, upstream, host)


async def proxy(
    scope: Scope,
    receive: Receive,
    send: Send,
    sandbox: Sandbox,
    port: int,
    upstream: str,
    host: str,
    drop_headers: frozenset[bytes] = frozenset(),
    extra_response_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Serve one HTTP request or WebSocket through a tunnel to ``port`` in ``sandbox``."""
    if scope["type"] == "websocket":
        await _proxy_websocket(scope, receive, send, sandbox, port, upstream, host, drop_headers)
    else:
        await _proxy_http(
            scope,
            receive,
            send,
            sandbox,
            port,
            upstream,
            host,
            drop_headers,
            extra_response_headers or [],
        )


def _upstream_target(scope: Scope, raw_path: bytes) -> str:
    path = raw_path.decode("latin-1") if raw_path else quote(scope.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    query = scope.get("query_string") or b""
    return path + ("?" + query.decode("latin-1") if query else "")


async def open_tunnel(sandbox: Sandbox, port: int, first_bytes: bytes = b"") -> Channel:
    """A raw byte pipe to ``port`` in the sandbox (waking it if needed).

    ``first_bytes`` go out right behind the request, before the agent's answer: the
    agent pipes whatever follows the request once connected (and drops it if nothing
    listens), which saves a round trip per preview request.
    """
    channel = await services.open_agent(sandbox, Tunnel(port=port))
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


def _request_headers(
    scope: Scope, port: int, host: str, drop: frozenset[bytes], *, websocket: bool = False
) -> list[tuple[bytes, bytes]]:
    """The client's headers minus hop-by-hop ones and the IDE's cookies, plus X-Forwarded-*."""
    listed = set()
    for key, value in scope.get("headers", ()):
        if key.lower() == b"connection":
            listed |= {t.strip().lower() for t in value.split(b",")}
    skip = HOP_BY_HOP | _OWN_HEADERS | drop | listed
    if websocket:
        skip |= _WS_HANDSHAKE
    ide_cookies = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, COOKIE_NAME}
    headers = [(b"host", f"localhost:{port}".encode())]
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
        (b"x-forwarded-host", host.encode("latin-1")),
        (b"x-forwarded-proto", _http_scheme(scope).encode()),
        (b"x-forwarded-for", str(client[0] or "").encode()),
    ]
    return headers


def _response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's response headers minus hop-by-hop ones, its cookies confined to the
    host that served them (``_own_cookie``)."""
    listed = set()
    for key, value in raw:
        if key == b"connection":
            listed |= {t.strip().lower() for t in value.split(b",")}
    skip = HOP_BY_HOP | listed
    headers = []
    for key, value in raw:
        if key in skip:
            continue
        if key == b"set-cookie":
            kept = _own_cookie(value)
            if kept is None:
                continue
            value = kept
        headers.append((key, value))
    return headers


def _server_cookie_names() -> frozenset[str]:
    names = (
        settings.SESSION_COOKIE_NAME,
        settings.CSRF_COOKIE_NAME,
        settings.LANGUAGE_COOKIE_NAME,
        COOKIE_NAME,
    )
    return frozenset(name.lower() for name in names)


def _own_cookie(value: bytes) -> bytes | None:
    """A ``Set-Cookie`` from a sandbox's app, made host-only; None to drop it.

    ``Domain`` is removed, so a cookie lands on the preview host that served it only,
    never on sibling previews or on the IDE, whose host is a parent of the preview
    domain (``localhost`` / ``preview.localhost``). Cookies named like the server's
    own (session, CSRF, language, the preview cookie; any case) are dropped, and so
    are nameless ones (``=sessionid=x`` reaches servers as ``sessionid=x``).
    """
    pair, *attributes = value.split(b";")
    name, sep, _ = pair.partition(b"=")
    name_text = name.decode("latin-1").strip()
    if not sep or not name_text or name_text.lower() in _server_cookie_names():
        return None
    kept = [
        attribute
        for attribute in attributes
        if attribute.partition(b"=")[0].strip().lower() != b"domain"
    ]
    return b";".join([pair, *kept])


# --------------------------------------------------------------------------- HTTP


# Idle keep-alive tunnels per (sandbox, port): a request without a body reuses one
# instead of opening a new agent connection and a new TCP connection in the sandbox.
# The token is still checked on every request; only the pipe is reused.
POOL_IDLE_SECONDS = 10.0
POOL_MAX_IDLE = 8
_pool: dict[tuple[str, int], list[Channel]] = {}


# An app that has not answered after this long may sit in a sandbox that another
# server process paused meanwhile (a kept-alive tunnel does not notice): make sure it
# runs, once, and keep waiting on the same connection.
NUDGE_AFTER = 2.0


async def _nudge(sandbox: Sandbox) -> None:
    with contextlib.suppress(SandboxError):
        await services.ensure_running(sandbox)


class _Stale(Exception):
    """A pooled tunnel turned out closed before any answer: retry on a new one."""


def _take_pooled(key: tuple[str, int]) -> Channel | None:
    idle = _pool.get(key)
    while idle:
        channel = idle.pop()
        if not channel.reader.at_eof() and not channel.writer.is_closing():
            return channel
        channel.writer.close()
    return None


def _give_back(key: tuple[str, int], channel: Channel) -> None:
    idle = _pool.setdefault(key, [])
    if len(idle) >= POOL_MAX_IDLE:
        channel.writer.close()
        return
    idle.append(channel)

    def expire() -> None:
        if channel in idle:
            idle.remove(channel)
            channel.writer.close()
        if not idle and _pool.get(key) is idle:
            del _pool[key]

    asyncio.get_running_loop().call_later(POOL_IDLE_SECONDS, expire)


async def _proxy_http(
    scope: Scope,
    receive: Receive,
    send: Send,
    sandbox: Sandbox,
    port: int,
    upstream: str,
    host: str,
    drop: frozenset[bytes],
    extra_response_headers: list[tuple[bytes, bytes]],
) -> None:
    headers = _request_headers(scope, port, host, drop)
    has_length = any(k == b"content-length" for k, _ in headers)
    chunked = not has_length and any(
        k.lower() == b"transfer-encoding" for k, _ in scope.get("headers", ())
    )
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    has_body = has_length or chunked
    key = (sandbox.id, port)
    for attempt in range(2):
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)
        try:
            head = conn.send(h11.Request(method=scope["method"], target=upstream, headers=headers))
        except h11.LocalProtocolError as exc:
            await _page(send, 400, "Bad request", f"The request cannot be forwarded: {exc}")
            return
        # a body is streamed, never replayed: only bodiless requests take the risk of
        # a pooled tunnel that the app closed meanwhile
        channel = _take_pooled(key) if not has_body and attempt == 0 else None
        pooled = channel is not None
        if channel is not None:
            channel.writer.write(head or b"")
        else:
            try:
                channel = await open_tunnel(sandbox, port, head or b"")
            except PortClosed:
                await _page(
                    send,
                    502,
                    "Nothing is listening",
                    f"No program in the sandbox is listening on port {port}. Start your "
                    "server (bound to 127.0.0.1 or 0.0.0.0) and reload this page.",
                )
                return
            except SandboxError as exc:
                await _page(send, 502, "Sandbox unavailable", exc.message)
                return
        try:
            reusable = await _exchange(
                scope,
                receive,
                send,
                sandbox,
                conn,
                channel,
                has_body,
                pooled,
                extra_response_headers,
            )
        except _Stale:
            await channel.close()
            continue
        except BaseException:
            await channel.close()
            raise
        if reusable:
            _give_back(key, channel)
        else:
            await channel.close()
        break
    await services.touch(sandbox)


async def _exchange(
    scope: Scope,
    receive: Receive,
    send: Send,
    sandbox: Sandbox,
    conn: h11.Connection,
    channel: Channel,
    has_body: bool,
    pooled: bool,
    extra_response_headers: list[tuple[bytes, bytes]],
) -> bool:
    """One request and response over ``channel``; True if it can carry another."""
    disconnected = asyncio.Event()
    body = asyncio.ensure_future(
        _pump_request(receive, conn, channel.writer, has_body, disconnected)
    )
    relay = asyncio.ensure_future(
        _relay_response(conn, channel, send, extra_response_headers, pooled)
    )
    waiter = asyncio.ensure_future(disconnected.wait())
    try:
        done, _ = await asyncio.wait(
            {relay, waiter}, timeout=NUDGE_AFTER, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            await _nudge(sandbox)
            done, _ = await asyncio.wait({relay, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if relay not in done:  # the client went away: stop reading from the app
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            return False
        relay.result()
        # (the client may be gone by now - the server says so once the response is
        # complete - but the exchange with the app finished cleanly)
        return (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and not conn.trailing_data[0]
        )
    finally:
        waiter.cancel()
        body.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await body


async def _pump_request(
    receive: Receive,
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    has_body: bool,
    disconnected: asyncio.Event,
) -> None:
    """Client body → tunnel, one chunk at a time; then wait for the client to leave."""
    sending = True
    try:
        if not has_body:
            writer.write(conn.send(h11.EndOfMessage()))
            sending = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
                return
            if not sending:
                continue
            chunk = message.get("body", b"")
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
            if not message.get("more_body", False):
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                sending = False
    except (h11.LocalProtocolError, ConnectionError, OSError):
        # the app answered (or closed) before reading the whole body: keep listening
        # for the client's disconnect only
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()


async def _relay_response(
    conn: h11.Connection,
    channel: Channel,
    send: Send,
    extra_headers: list[tuple[bytes, bytes]],
    pooled: bool,
) -> None:
    """Tunnel → client: status and headers, then the body, chunk by chunk."""
    reader = channel.reader
    started = False
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(RELAY_CHUNK))
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                headers = _response_headers(list(event.headers)) + extra_headers
                await send(
                    {"type": "http.response.start", "status": event.status_code, "headers": headers}
                )
                started = True
            elif isinstance(event, h11.Data):
                # awaiting send is the backpressure: under Daphne it waits while the
                # client's socket buffer is full (ide/daphne_flow.py)
                await send(
                    {"type": "http.response.body", "body": bytes(event.data), "more_body": True}
                )
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                if not started:
                    raise h11.RemoteProtocolError("closed without answering")
                break
    except (h11.RemoteProtocolError, ConnectionError, OSError) as exc:
        if not started and pooled:
            raise _Stale() from exc
        if not started:
            await _page(
                send,
                502,
                "Bad answer from the sandbox",
                f"The program on this port did not answer with valid HTTP: {exc}",
            )
            return
        # A body cut short: end the application with an error so the server drops
        # the client's connection rather than present a truncated body as complete.
        raise ConnectionAbortedError(f"the sandbox's answer broke off: {exc}") from exc
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --------------------------------------------------------------------------- WebSocket


async def _proxy_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    sandbox: Sandbox,
    port: int,
    upstream: str,
    host: str,
    drop: frozenset[bytes],
) -> None:
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    try:
        channel = await open_tunnel(sandbox, port)
    except (PortClosed, SandboxError):
        await send({"type": "websocket.close", "code": 1011})
        return
    reader, writer = channel.reader, channel.writer
    conn = WSConnection(ConnectionType.CLIENT)
    headers = [
        (k, v) for k, v in _request_headers(scope, port, host, drop, websocket=True) if k != b"host"
    ]
    try:
        writer.write(
            conn.send(
                ws.Request(
                    host=f"localhost:{port}",
                    target=upstream,
                    subprotocols=list(scope.get("subprotocols") or []),
                    extra_headers=headers,
                )
            )
        )
        await writer.drain()
        handshake = asyncio.ensure_future(_handshake(conn, reader))
        done, _ = await asyncio.wait({handshake}, timeout=NUDGE_AFTER)
        if not done:
            await _nudge(sandbox)
        accepted = await handshake
    except Exception as exc:  # any failure of the handshake refuses the client
        log.info("preview websocket handshake to port %s failed: %s", port, exc)
        accepted = None
    if accepted is None:
        await channel.close()
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": accepted.subprotocol})
    await services.touch(sandbox)
    upstream_task = asyncio.ensure_future(_ws_client_to_app(receive, conn, writer))
    downstream_task = asyncio.ensure_future(_ws_app_to_client(conn, reader, writer, send))
    try:
        await asyncio.wait({upstream_task, downstream_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (upstream_task, downstream_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await channel.close()
        await services.touch(sandbox)


async def _handshake(
    conn: WSConnection, reader: asyncio.StreamReader
) -> ws.AcceptConnection | None:
    while True:
        data = await reader.read(CHUNK)
        conn.receive_data(data or None)
        for event in conn.events():
            if isinstance(event, ws.AcceptConnection):
                return event
            if isinstance(event, ws.RejectConnection | ws.RejectData | ws.CloseConnection):
                return None
        if not data:
            return None


def _sendable_code(code: int | None) -> int:
    if code is None or code in (1005, 1006, 1015) or not (1000 <= code <= 4999):
        return 1000
    return code


async def _ws_client_to_app(
    receive: Receive, conn: WSConnection, writer: asyncio.StreamWriter
) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            if message.get("bytes") is not None:
                out = conn.send(ws.BytesMessage(data=message["bytes"]))
            else:
                out = conn.send(ws.TextMessage(data=message.get("text") or ""))
            writer.write(out)
            await writer.drain()
        elif message["type"] == "websocket.disconnect":
            with contextlib.suppress(Exception):
                writer.write(
                    conn.send(ws.CloseConnection(code=_sendable_code(message.get("code"))))
                )
                await writer.drain()
            return


async def _ws_app_to_client(
    conn: WSConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, send: Send
) -> None:
    text: list[str] = []
    binary: list[bytes] = []
    data = b"-"  # the handshake's read may have brought frames already: events first
    while True:
        for event in conn.events():
            if isinstance(event, ws.TextMessage):
                text.append(event.data)
                if event.message_finished:
                    await send({"type": "websocket.send", "text": "".join(text)})
                    text.clear()
            elif isinstance(event, ws.BytesMessage):
                binary.append(bytes(event.data))
                if event.message_finished:
                    await send({"type": "websocket.send", "bytes": b"".join(binary)})
                    binary.clear()
            elif isinstance(event, ws.Ping):
                writer.write(conn.send(event.response()))
            elif isinstance(event, ws.CloseConnection):
                with contextlib.suppress(Exception):
                    writer.write(conn.send(event.response()))
                await send({"type": "websocket.close", "code": _sendable_code(event.code)})
                return
        if not data:
            await send({"type": "websocket.close", "code": 1011})
            return
        data = await reader.read(CHUNK)
        conn.receive_data(data or None)


# --------------------------------------------------------------------------- pages


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;
color:#222}}h1{{font-size:1.4em}}code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>{title}</h1><p>{message}</p><p><small>Sandbox preview</small></p></body></html>
"""


async def _page(send: Send, status: int, title: str, message: str) -> None:
    body = _PAGE.format(title=html.escape(title), message=html.escape(message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send, status: int, title: str, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status})
    else:
        await _page(send, status, title, message)


async def _redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [
        (b"location", location.encode("latin-1")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    if cookie:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


# --------------------------------------------------------------------------- private ports


def ide_origin(scheme: str, preview_port: int | None) -> str:
    if settings.IDE_BASE_URL:
        return settings.IDE_BASE_URL
    return f"{scheme}://" + ports.Origin(scheme, preview_port).netloc("localhost")


def _login_url(scope: Scope, host: str) -> str:
    scheme = _http_scheme(scope)
    _, port = split_host(host)
    here = f"{scheme}://{host}{_upstream_target(scope, scope.get('raw_path') or b'')}"
    return ide_origin(scheme, port) + "/preview-auth/?" + urlencode({"next": here})


def _preview_origin_allowed(scope: Scope) -> bool:
    """A WebSocket to a private port, which the preview cookie authenticates, must come
    from a page of that same preview host (scheme, host and port).

    Not from the IDE's origin: the cookie is host-only on the preview host, and the
    page that talks to the app's WebSocket is the app's own page on that host (in the
    IDE's preview pane too, an iframe whose origin is the preview host); the IDE
    itself never opens one. And never from a sibling preview, another local port or
    ``null``: SameSite=Lax sends the cookie to every port of the same site, and every
    preview subdomain is the same site, so another tenant's app could otherwise talk
    to this one as the user who opened it.
    """
    return wsauth.origin_allowed(scope, wsauth.own_origins(scope))


async def may_open(user_id: int, sandbox: Sandbox) -> bool:
    """Whether a user may open the sandbox's private previews: its owner, or someone
    who may look at it (a course's teacher, a class it is shared with)."""
    if user_id == sandbox.owner_id:
        return True
    from django.contrib.auth import get_user_model

    from sandboxes.classroom.access import can_view  # the core must not import it early

    user = await get_user_model().objects.filter(pk=user_id, is_active=True).afirst()
    return user is not None and await can_view(user, sandbox.id)


# A viewer's "yes" from ``may_open`` is reused for this many seconds (a page load's
# requests then cost one query); a revoked view stops opening previews within it.
VIEWER_RECHECK_SECONDS = 5.0
_viewers: dict[tuple[int, str], float] = {}


async def _may_open_cached(user_id: int, sandbox: Sandbox) -> bool:
    if user_id == sandbox.owner_id:
        return True
    key = (user_id, sandbox.id)
    now = time.monotonic()
    if _viewers.get(key, 0.0) > now:
        return True
    if not await may_open(user_id, sandbox):
        _viewers.pop(key, None)
        return False
    if len(_viewers) >= 10_000:
        _viewers.clear()
    _viewers[key] = now + VIEWER_RECHECK_SECONDS
    return True


async def _accept_ticket(scope: Scope, send: Send, name: str) -> None:
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    try:
        data = signing.loads(query.get("ticket", [""])[0], salt=TICKET_SALT, max_age=TICKET_MAX_AGE)
    except signing.BadSignature:
        data = None
    user_id = callers.signed_user_id(data)
    if not isinstance(data, dict) or data.get("h") != name or user_id is None:
        await _page(
            send,
            403,
            "Link expired",
            "This sign-in link is not valid for this preview (or has expired). "
            "Open the preview URL again.",
        )
        return
    next_path = _local_path(data.get("n")) or "/"
    cookie = SimpleCookie()
    cookie[COOKIE_NAME] = callers.preview_cookie(name, user_id)
    morsel = cookie[COOKIE_NAME]
    morsel["path"] = "/"
    morsel["max-age"] = settings.PREVIEW_COOKIE_MAX_AGE
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if _http_scheme(scope) == "https":
        morsel["secure"] = True
    await _redirect(send, next_path, morsel.OutputString())


def _local_path(value: object) -> str | None:
    """``value`` if it is a path on the current host (``/x?y``), else None.

    It must start with exactly one slash: browsers read two slashes, or a slash and
    a backslash, as the start of another host, and drop tabs and newlines before
    parsing, so backslashes, spaces and control characters are refused anywhere; so
    is anything beyond ASCII, which a browser would have percent-encoded.
    """
    if not isinstance(value, str) or not value.startswith("/"):
        return None
    if any(not 0x20 < ord(char) < 0x7F for char in value) or "\\" in value:
        return None
    return None if value.startswith("//") else value


@dataclass(frozen=True)
class _Next:
    """Where ``/preview-auth/`` sends the browser back to."""

    base: str  # scheme://host[:port] of the preview
    name: str  # the preview host's name, which the ticket is bound to
    target: Target
    path: str  # path and query, always on that host


def _next_preview(request: HttpRequest) -> _Next | None:
    """``?next=`` of ``/preview-auth/``, if it is a preview URL of this server.

    Only http(s) on the scheme and port the IDE is reached on (preview hosts share
    them, see ``ports.preview_url``) or those of ``IDE_BASE_URL``: a ticket never
    goes to another program on another port of a preview name (``*.localhost`` is
    loopback). Its path must stay on the preview host (``_local_path``).
    """
    try:
        parts = urlsplit(request.GET.get("next", ""))
    except ValueError:
        return None
    name, port = split_host(parts.netloc)
    scheme = request.scheme or "http"
    served = {(o.scheme, o.port) for o in wsauth.host_origins(scheme, request.get_host())}
    origin = wsauth.web_origin(parts.scheme, name, port)
    target = parse_preview_host(name)
    path = _local_path((parts.path or "/") + ("?" + parts.query if parts.query else ""))
    if origin is None or (origin.scheme, origin.port) not in served or not target or not path:
        return None
    return _Next(f"{parts.scheme}://{parts.netloc}", name, target, path)


async def preview_auth_view(request: HttpRequest) -> HttpResponse:
    """``/preview-auth/?next=<preview URL>`` on the IDE origin: the session of the
    owner (or of someone who may look at the sandbox, checked now) buys a one-minute
    ticket for that preview host, and the browser goes back."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    back = _next_preview(request)
    if back is None:
        return HttpResponse(
            _PAGE.format(
                title="Not a preview link",
                message="This sign-in link does not lead to a preview of this server. "
                "Open the preview URL again.",
            ),
            status=400,
        )
    target = back.target
    exposed = await ports.find_exposed(target.sandbox_id, target.port)
    if (
        exposed is None
        or not hmac.compare_digest(exposed.token.encode(), target.token.encode())
        or not await may_open(user.pk, exposed.sandbox)
    ):
        return HttpResponse(
            _PAGE.format(
                title="No preview here",
                message="This preview does not exist or is not shared with you.",
            ),
            status=404,
        )
    ticket = signing.dumps({"h": back.name, "n": back.path, "u": user.pk}, salt=TICKET_SALT)
    return HttpResponseRedirect(f"{back.base}{AUTH_PATH}?{urlencode({'ticket': ticket})}")


# --------------------------------------------------------------------------- path fallback


def _browser_check_fails(scope: Scope, by_session: bool) -> bool:
    """A WebSocket whose ``Origin`` is not exactly one of the IDE's own
    (``wsauth.ide_origins``), as on the IDE's other WebSockets; for a session caller,
    an unsafe method without Django's CSRF proof (the ``X-CSRFToken`` header, and a
    matching Origin), exactly as the API asks of session callers.

    A preview's own pages on the fallback run in an opaque origin (the CSP sandbox),
    so their scripts' WebSockets and form posts fail these checks on purpose: under
    the session they would act with the owner's cookie from any page of the same
    site. Such apps need a preview host (or a token).
    """
    if scope["type"] == "websocket":
        return not wsauth.origin_allowed(scope, wsauth.ide_origins(scope))
    # Django's check on the headers alone: the body is streamed to the app, never
    # read here (without a form content type the CSRF check reads no form field).
    return by_session and callers.csrf_fails(callers.headers_request(scope))


_FALLBACK = re.compile(r"^/preview/(?P<id>[a-z0-9]{12})/(?P<port>[0-9]{1,5})(?P<rest>/.*)?$")


async def _serve_fallback(scope: Scope, receive: Receive, send: Send) -> None:
    """``/preview/{id}/{port}/…`` on the IDE host, for the sandbox's owner only."""
    match = _FALLBACK.match(scope["path"])
    caller = await callers.scope_caller(scope)
    user, by_session = caller.user, caller.credential == "session"
    if user.is_authenticated and _browser_check_fails(scope, by_session):
        await _refuse(
            scope,
            send,
            403,
            "Request refused",
            "This request came from another site, or without the CSRF token "
            "(X-CSRFToken header): the session opens path-based previews only from "
            "the IDE's own pages. Programs use a bearer token.",
        )
        return
    exposed: ExposedPort | None = None
    if match and user.is_authenticated:
        exposed = await ports.find_exposed(match["id"], int(match["port"]))
        if exposed is not None and exposed.sandbox.owner_id != user.pk:
            exposed = None
    if exposed is None or match is None:
        if scope["type"] == "http" and not user.is_authenticated:
            await _page(send, 401, "Log in first", "Path-based previews are for their owner.")
        else:
            await _refuse(scope, send, 404, "No preview here", "This port is not exposed.")
        return
    prefix = f"/preview/{match['id']}/{match['port']}"
    raw = scope.get("raw_path") or scope["path"].encode()
    rest = raw[len(prefix) :] or b"/"
    if scope["type"] == "http" and not match["rest"]:
        # /preview/id/port → /preview/id/port/ so the app's relative links resolve
        await _redirect(send, prefix + "/")
        return
    upstream = _upstream_target(scope, rest)
    if scope["type"] == "websocket":
        query = scope.get("query_string") or b""
        cleaned = [p for p in query.split(b"&") if not p.startswith(b"token=")]
        upstream = _upstream_target({**scope, "query_string": b"&".join(cleaned)}, rest)
    host = _header(scope, b"host")
    await proxy(
        scope,
        receive,
        send,
        exposed.sandbox,
        exposed.port,
        upstream,
        host,
        drop_headers=frozenset({b"authorization"}),
        extra_response_headers=[(b"content-security-policy", _FALLBACK_CSP)],
    )
