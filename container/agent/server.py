"""The agent's listener: accepts a connection, reads its request, runs the handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from . import execs, files, gitops, kernels, processes, quota, starter, terminals, tunnel
from .protocol import Channel, Error, Message, Ping, Pong, ProtocolError

log = logging.getLogger("sandbox_agent")

Handler = Callable[[Message, Channel], Awaitable[None]]


async def _ping(request: Message, channel: Channel) -> None:
    await channel.send_message(Pong(pid=os.getpid(), uid=os.getuid()))


HANDLERS: dict[type[Message], Handler] = {
    Ping: _ping,
    **execs.HANDLERS,
    **files.HANDLERS,
    **processes.HANDLERS,
    **gitops.HANDLERS,
    **terminals.HANDLERS,
    **tunnel.HANDLERS,
    **kernels.HANDLERS,
    **starter.HANDLERS,
    **quota.HANDLERS,
}


async def handle_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    quota.watcher.kick()  # a request may start processes that write
    channel = Channel(reader, writer)
    try:
        request = await channel.receive_message()
        if request is None:
            return
        handler = HANDLERS.get(type(request))
        if handler is None:
            await channel.send_message(
                Error(code="bad_request", message=f"the agent cannot handle {request.type!r}")
            )
            return
        await handler(request, channel)
    except ProtocolError as exc:
        with contextlib.suppress(ConnectionError, OSError):
            await channel.send_message(Error(code="protocol_error", message=str(exc)))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    except Exception as exc:
        log.exception("handler failed")
        with contextlib.suppress(ConnectionError, OSError):
            await channel.send_message(Error(code="agent_error", message=f"agent error: {exc}"))
    finally:
        await channel.close()


def _use_pidfd_watcher() -> None:
    """Python 3.11 watches each child from a thread; a pidfd in the loop is cheaper.

    (3.12 and later choose the pidfd watcher by themselves.) Not where the kernel
    lacks pidfd_open: gVisor (``SANDBOX_RUNTIME=runsc``) answers ENOSYS.
    """
    if sys.version_info < (3, 12) and hasattr(asyncio, "PidfdChildWatcher"):
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)


async def serve(socket_path: str, tcp: str = "") -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="agent: %(message)s")
    _use_pidfd_watcher()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    tmp_path = socket_path + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_path)
    servers = [await asyncio.start_unix_server(handle_connection, path=tmp_path, limit=2**20)]
    os.chmod(tmp_path, 0o666)  # noqa: S103 - the directory, shared only with the server, guards it
    os.rename(tmp_path, socket_path)  # appears only once it accepts connections
    if tcp:
        host, _, port = tcp.rpartition(":")
        servers.append(await asyncio.start_server(handle_connection, host or "0.0.0.0", int(port)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s", socket_path)
    watcher = quota.start()
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    for server in servers:
        server.close()
