"""HTTP through a tunnel: the request as HTTP/1.1 (h11) to the app in the sandbox,
its answer streamed back one chunk at a time. A chunk is read from the tunnel only
once ``send`` of the previous one returned (under Daphne ``send`` waits while the
client's socket is full), so memory stays flat whatever the size.

The app's answer cannot reach beyond its host: ``Set-Cookie`` loses ``Domain`` and
cookies named like the server's are dropped (``own_cookie``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import h11
from django.conf import settings

from container.agent.protocol import Channel
from sandboxes import callers
from sandboxes.errors import SandboxError
from sandboxes.lifecycle import touch

from .pages import page
from .scope import Receive, Scope, Send
from .tunnel import (
    HOP_BY_HOP,
    NUDGE_AFTER,
    PortClosed,
    Upstream,
    connection_listed,
    nudge,
    open_tunnel,
    request_headers,
)

# Response bytes handed to the server per send: whatever the tunnel has buffered, up
# to this. Larger sends mean fewer pause/resume rounds with the client's socket.
RELAY_CHUNK = 1024 * 1024

# Idle keep-alive tunnels per (sandbox, port): a request without a body reuses one
# instead of opening a new agent connection and a new TCP connection in the sandbox.
# The token is still checked on every request; only the pipe is reused.
POOL_IDLE_SECONDS = 10.0
POOL_MAX_IDLE = 8
_pool: dict[tuple[str, int], list[Channel]] = {}


class _Stale(Exception):
    """A pooled tunnel turned out closed before any answer: retry on a new one."""


@dataclass(frozen=True)
class _Link:
    """One HTTP/1.1 connection to the app: the tunnel, h11's state of it, and
    whether it came from the pool (and may turn out stale)."""

    channel: Channel
    conn: h11.Connection
    pooled: bool


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


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's response headers minus hop-by-hop ones, its cookies confined to the
    host that served them (``own_cookie``)."""
    skip = HOP_BY_HOP | connection_listed(raw)
    headers = []
    for key, value in raw:
        if key in skip:
            continue
        if key == b"set-cookie":
            kept = own_cookie(value)
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
        callers.PREVIEW_COOKIE,
    )
    return frozenset(name.lower() for name in names)


def own_cookie(value: bytes) -> bytes | None:
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


async def proxy_http(scope: Scope, receive: Receive, send: Send, upstream: Upstream) -> None:
    """Serve one HTTP request through a tunnel (a pooled one if it has no body)."""
    headers = request_headers(scope, upstream)
    has_length = any(k == b"content-length" for k, _ in headers)
    chunked = not has_length and any(
        k.lower() == b"transfer-encoding" for k, _ in scope.get("headers", ())
    )
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    has_body = has_length or chunked
    key = (upstream.sandbox.id, upstream.port)
    for attempt in range(2):
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)
        try:
            head = conn.send(
                h11.Request(method=scope["method"], target=upstream.path, headers=headers)
            )
        except h11.LocalProtocolError as exc:
            await page(send, 400, "Bad request", f"The request cannot be forwarded: {exc}")
            return
        # a body is streamed, never replayed: only bodiless requests take the risk of
        # a pooled tunnel that the app closed meanwhile
        channel = _take_pooled(key) if not has_body and attempt == 0 else None
        pooled = channel is not None
        if channel is not None:
            channel.writer.write(head or b"")
        else:
            try:
                channel = await open_tunnel(upstream.sandbox, upstream.port, head or b"")
            except PortClosed:
                await page(
                    send,
                    502,
                    "Nothing is listening",
                    f"No program in the sandbox is listening on port {upstream.port}. Start "
                    "your server (bound to 127.0.0.1 or 0.0.0.0) and reload this page.",
                )
                return
            except SandboxError as exc:
                await page(send, 502, "Sandbox unavailable", exc.message)
                return
        try:
            reusable = await _exchange(
                receive, send, upstream, _Link(channel, conn, pooled), has_body
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
    await touch(upstream.sandbox)


async def _exchange(
    receive: Receive, send: Send, upstream: Upstream, link: _Link, has_body: bool
) -> bool:
    """One request and response over ``link``; True if it can carry another."""
    conn = link.conn
    disconnected = asyncio.Event()
    body = asyncio.ensure_future(
        _pump_request(receive, conn, link.channel.writer, has_body, disconnected)
    )
    relay = asyncio.ensure_future(_relay_response(link, send, upstream.response_headers))
    waiter = asyncio.ensure_future(disconnected.wait())
    try:
        done, _ = await asyncio.wait(
            {relay, waiter}, timeout=NUDGE_AFTER, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            await nudge(upstream.sandbox)
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
            writer.write(conn.send(h11.EndOfMessage()) or b"")
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
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
            if not message.get("more_body", False):
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                sending = False
    except (h11.LocalProtocolError, ConnectionError, OSError):
        # the app answered (or closed) before reading the whole body: keep listening
        # for the client's disconnect only
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()


async def _relay_response(
    link: _Link, send: Send, extra_headers: tuple[tuple[bytes, bytes], ...]
) -> None:
    """Tunnel → client: status and headers, then the body, chunk by chunk."""
    conn, reader = link.conn, link.channel.reader
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
                headers = response_headers(list(event.headers)) + list(extra_headers)
                await send(
                    {"type": "http.response.start", "status": event.status_code, "headers": headers}
                )
                started = True
            elif isinstance(event, h11.Data):
                # awaiting send is the backpressure: under Daphne it waits while the
                # client's socket buffer is full (ide/daphne_internals.py)
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
        if not started and link.pooled:
            raise _Stale() from exc
        if not started:
            await page(
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
