"""TCP tunnels to 127.0.0.1:PORT and listening-port detection.

A tunnel turns the agent connection into a plain byte pipe to a port inside the
sandbox: the server speaks HTTP or WebSocket over it to the program listening there.
Each direction copies one chunk at a time and waits for the other end to take it
(``drain``), so a slow reader slows the writer down instead of filling memory; an
end of stream in one direction is passed on as a half-close and the other direction
goes on until it ends too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from .dispatch import on, table
from .failures import AgentFailure
from .protocol import (
    CHUNK,
    Channel,
    Error,
    ListeningPorts,
    PortList,
    Tunnel,
    TunnelOpen,
)

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column
# Bytes moved per read in each direction: larger reads mean fewer trips through the
# event loop for a download (the socket buffers bound what is in flight anyway).
TUNNEL_CHUNK = 256 * 1024
_PROC_FILES = ("/proc/net/tcp", "/proc/net/tcp6")
# The agent's own network listener (server.serve): no program of the sandbox's, so
# never offered as a port to preview.
own_ports: set[int] = set()


def listening_ports(paths: tuple[str, ...] = _PROC_FILES) -> list[int]:
    ports: set[int] = set()
    for path in paths:
        try:
            with open(path) as table:
                next(table, None)  # the header line
                for line in table:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _LISTEN:
                        ports.add(int(fields[1].rpartition(":")[2], 16))
        except OSError:
            continue  # no IPv6 in this sandbox, for instance
    return sorted(ports - own_ports)


async def _listening(request: ListeningPorts, channel: Channel) -> None:
    await channel.send_message(PortList(ports=listening_ports()))


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    except OSError:
        # a program bound to [::1] only; if that fails too, that error is raised
        return await asyncio.open_connection("::1", port, limit=2**20)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    while True:
        data = await reader.read(TUNNEL_CHUNK)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


async def pipe(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Bytes both ways until both directions ended (or one of them broke)."""
    tasks = [
        asyncio.ensure_future(_copy(a[0], b[1])),
        asyncio.ensure_future(_copy(b[0], a[1])),
    ]
    try:
        pending: set[asyncio.Future[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.exception() is not None for t in done):
                break  # a reset in one direction ends both
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task


async def _tunnel(request: Tunnel, channel: Channel) -> None:
    port = request.port
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise AgentFailure("bad_request", "port must be 1-65535")
    try:
        reader, writer = await _connect(port)
    except OSError:
        # Answered here, not by raising: the connection is wound down in its own way.
        await channel.send_message(
            Error(
                code="connection_refused",
                message=f"Nothing is listening on port {port} inside the sandbox.",
            )
        )
        # The client may already have sent its first bytes behind the request: take
        # them until it hangs up, so that closing does not reset the connection
        # under the answer it has yet to read.
        with contextlib.suppress(OSError, RuntimeError):
            channel.writer.write_eof()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with asyncio.timeout(10):
                while await channel.reader.read(CHUNK):
                    pass
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await channel.send_message(TunnelOpen(port=port))
        await pipe((channel.reader, channel.writer), (reader, writer))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


HANDLERS = table(on(Tunnel, _tunnel), on(ListeningPorts, _listening))
