"""WebSocket through a tunnel: the upgrade replayed to the app (wsproto) and,
once the app accepts, frames relayed both ways, text and binary kept apart. The
client is accepted only after the app accepted, with the subprotocol it chose.
While it is open, the caller's right to the port is asked again every second, so a
revoke or an expiry ends it too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from container.agent.protocol import CHUNK
from sandboxes.errors import SandboxError
from sandboxes.lifecycle import touch

from .scope import Receive, Scope, Send
from .tunnel import NUDGE_AFTER, PortClosed, Upstream, nudge, open_tunnel, request_headers

log = logging.getLogger(__name__)

# An open WebSocket's admission is asked again this often (seconds).
READMIT_SECONDS = 1.0


async def proxy_websocket(scope: Scope, receive: Receive, send: Send, upstream: Upstream) -> None:
    """Serve one WebSocket through a tunnel; refused (1011) if the app does not accept."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    try:
        channel = await open_tunnel(upstream.sandbox, upstream.port)
    except (PortClosed, SandboxError):
        await send({"type": "websocket.close", "code": 1011})
        return
    reader, writer = channel.reader, channel.writer
    conn = WSConnection(ConnectionType.CLIENT)
    headers = [(k, v) for k, v in request_headers(scope, upstream, websocket=True) if k != b"host"]
    try:
        writer.write(
            conn.send(
                ws.Request(
                    host=f"localhost:{upstream.port}",
                    target=upstream.path,
                    subprotocols=list(scope.get("subprotocols") or []),
                    extra_headers=headers,
                )
            )
        )
        await writer.drain()
        handshake = asyncio.ensure_future(_handshake(conn, reader))
        done, _ = await asyncio.wait({handshake}, timeout=NUDGE_AFTER)
        if not done:
            await nudge(upstream.sandbox)
        accepted = await handshake
    except Exception as exc:  # any failure of the handshake refuses the client
        log.info("preview websocket handshake to port %s failed: %s", upstream.port, exc)
        accepted = None
    if accepted is None:
        await channel.close()
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": accepted.subprotocol})
    await touch(upstream.sandbox)
    upstream_task = asyncio.ensure_future(_client_to_app(receive, conn, writer))
    downstream_task = asyncio.ensure_future(_app_to_client(conn, reader, writer, send))
    tasks: set[asyncio.Future[Any]] = {upstream_task, downstream_task}
    watch = (
        asyncio.ensure_future(_until_refused(upstream.admission)) if upstream.admission else None
    )
    if watch is not None:
        tasks.add(watch)
    refused: int | None = None
    try:
        ended, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if watch is not None and watch in ended:
            refused = watch.result() if watch.exception() is None else 1011
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if refused is not None:  # the caller may no longer open the port
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": refused})
        await channel.close()
        await touch(upstream.sandbox)


async def _until_refused(admission: Callable[[], Awaitable[int | None]]) -> int:
    """The close code once ``admission`` refuses the caller."""
    while True:
        await asyncio.sleep(READMIT_SECONDS)
        code = await admission()
        if code is not None:
            return code


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


async def _client_to_app(
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


async def _app_to_client(
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
