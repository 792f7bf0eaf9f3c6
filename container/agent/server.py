"""The agent's listener: accepts a connection, reads its request, runs the handler.

Failures are answered here, once for every handler: an ``AgentFailure`` (or an
``OSError``, through ``failures.from_os_error``) becomes the request's ``Error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import signal
import sys
from functools import partial

from . import execs, files, identity, quota, sessions
from .dispatch import Handler, Handlers, on, table
from .failures import AgentFailure, from_os_error
from .protocol import (
    PROTOCOL_VERSION,
    Challenge,
    Channel,
    Error,
    Hello,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Welcome,
    proof,
    proven_nonce,
    valid_proof,
)

log = logging.getLogger("sandbox_agent")

# The sandbox's key, given by the server in SANDBOX_AGENT_KEY (hex) when it created the
# container. Without one the agent answers nobody.
_key = b""


def set_key(key: bytes) -> None:
    global _key
    _key = key


def key_from_environment() -> bytes:
    """The key, removed from the environment so that nothing the agent starts sees it."""
    try:
        return bytes.fromhex(os.environ.pop("SANDBOX_AGENT_KEY", ""))
    except ValueError:
        return b""


def tcp_from_environment() -> str:
    """``HOST:PORT`` of the network listener the server asked for (empty: none), read
    from SANDBOX_AGENT_TCP so that the image's command stays the same in both modes."""
    value = os.environ.pop("SANDBOX_AGENT_TCP", "")
    return value if value.rpartition(":")[2].isdigit() else ""


async def _greet(channel: Channel, challenge: str = "") -> bool:
    """Check the client's Hello (over ``challenge`` too, on a network listener) and
    have Welcome answered; False (and an Error sent) if the client does not hold this
    sandbox's key."""
    if challenge:
        await channel.send_message(Challenge(nonce=challenge))
    hello = await channel.receive_message()
    if hello is None:
        return False
    nonce = proven_nonce(hello.nonce, challenge) if isinstance(hello, Hello) else ""
    if not isinstance(hello, Hello) or not valid_proof(_key, "client", nonce, hello.proof):
        await channel.send_message(
            Error(code="unauthorized", message="this agent does not answer that client")
        )
        return False
    # Sent with the first answer (Channel.hold): no write and no wakeup of its own.
    channel.hold(Welcome(proof=proof(_key, "agent", nonce), version=PROTOCOL_VERSION))
    return True


async def _ping(request: Ping, channel: Channel) -> None:
    await channel.send_message(Pong(pid=os.getpid(), uid=os.geteuid()))  # the uid it acts as


# Loaded with the agent: what a wake asks for first (a ping, then usually a command),
# and ``files``, whose import reads the umask by setting it (safe only before any
# request runs). The others (pyte, git, kernels, ...) cost about a tenth of the
# agent's start, which a stopped sandbox waits for when it wakes: they are imported
# when the first request that needs one of them arrives.
HANDLERS: Handlers = table(
    on(Ping, _ping),
    execs.HANDLERS,
    sessions.HANDLERS,
    files.HANDLERS,
    quota.HANDLERS,
)
LATER = ["processes", "gitops", "terminals", "tunnel", "kernels", "starter"]


def handler_for(message_type: type[Message]) -> Handler | None:
    """The handler of a request type, importing the modules in ``LATER`` the first
    time a request is not one of those loaded with the agent."""
    handler = HANDLERS.get(message_type)
    if handler is None and LATER:
        modules = [importlib.import_module(f".{name}", __package__) for name in LATER]
        HANDLERS.update(table(HANDLERS, *(module.HANDLERS for module in modules)))
        LATER.clear()
        handler = HANDLERS.get(message_type)
    return handler


async def handle_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, challenge: bool = False
) -> None:
    """One operation; ``challenge`` on the network listener (see ``Challenge``)."""
    quota.watcher.kick()  # a request may start processes that write
    channel = Channel(reader, writer)
    try:
        if not await _greet(channel, secrets.token_hex(16) if challenge else ""):
            return
        request = await channel.receive_message()
        if request is None:
            return
        await _handle(request, channel)
    except ProtocolError as exc:
        await _answer(channel, Error(code="protocol_error", message=str(exc)))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    except Exception as exc:
        log.exception("handler failed")
        await _answer(channel, Error(code="agent_error", message=f"agent error: {exc}"))
    finally:
        await channel.close()


async def _handle(request: Message, channel: Channel) -> None:
    """Run the request's handler; a failure is the request's answer."""
    handler = handler_for(type(request))
    try:
        if handler is None:
            raise AgentFailure("bad_request", f"the agent cannot handle {request.type!r}")
        await handler(request, channel)
    except AgentFailure as exc:
        await _answer(channel, exc.to_error())
    except OSError as exc:
        if isinstance(exc, ConnectionError):
            raise  # the client went away: nobody to answer
        path = getattr(request, "path", None)
        await _answer(
            channel, from_os_error(exc, path if isinstance(path, str) else None).to_error()
        )


async def _answer(channel: Channel, error: Error) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        await channel.send_message(error)


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


async def serve(socket_path: str, tcp: str = "", user: str = "") -> None:
    """Listen on ``socket_path`` (created while still root, in a directory only root
    may enter), then drop to ``user`` for everything else (see ``identity``)."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="agent: %(message)s")
    set_key(key_from_environment())
    if not _key:
        log.warning("no SANDBOX_AGENT_KEY: every connection will be refused")
    _use_pidfd_watcher()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    tmp_path = socket_path + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_path)
    servers = [await asyncio.start_unix_server(handle_connection, path=tmp_path, limit=2**20)]
    os.chmod(tmp_path, 0o666)  # noqa: S103 - the directory, shared only with the server, guards it
    os.rename(tmp_path, socket_path)  # appears only once it accepts connections
    tcp = tcp or tcp_from_environment()
    if tcp:
        # Bound while still root, like the socket; every connection is challenged.
        host, _, port = tcp.rpartition(":")
        servers.append(
            await asyncio.start_server(
                partial(handle_connection, challenge=True),
                host or "0.0.0.0",  # noqa: S104 - the engine publishes it on the host's loopback
                int(port),
                limit=2**20,
            )
        )
        # Never offered as a preview port. Imported here, not at start: the tunnel
        # module is one of those loaded on demand (``LATER``), the same module after.
        from . import tunnel

        tunnel.own_ports.add(int(port))
    if user:
        identity.become_agent(user)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s%s", socket_path, f" and {tcp}" if tcp else "")
    watcher = quota.start()
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    for server in servers:
        server.close()
