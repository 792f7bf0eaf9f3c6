"""Dial a sandbox's agent and speak ``container/agent/protocol.py`` to it.

One connection per operation; the stream's own flow control is the backpressure
(we read a frame only when the consumer asks for the next event).

Nothing an agent sends is trusted (a tenant may replace its own agent): a frame is
at most MAX_FRAME bytes, a control message is decoded with ``decode_untrusted``
(bounded, every field of its declared type), and whatever breaks the protocol is
an ``AgentProtocolError`` (502 agent_protocol_error). Callers that gather several
frames into one answer bound what they keep (see ``files``, ``processes``, ``code``
and ``execs.exec_collect``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from container.agent.protocol import (
    OLDEST_COMPATIBLE_VERSION,
    Challenge,
    Channel,
    Error,
    Exit,
    Kind,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Started,
    Welcome,
    check_types,
    decode_message,
    decode_untrusted,
    encode_message,
    hello,
    proven_nonce,
    valid_proof,
)
from sandboxes.backends.base import AgentAddress
from sandboxes.errors import AgentError, AgentProtocolError, SandboxError, from_agent

M = TypeVar("M", bound=Message)


class AgentUnreachable(AgentError):
    """Nothing answers at the agent's address (the container is down or starting)."""

    code = "agent_unreachable"
    default_message = "The sandbox's agent is not answering."


class AgentImpostor(AgentError):
    """Whatever answered at the agent's address does not hold the sandbox's key."""

    code = "agent_unverified"
    default_message = (
        "The sandbox's agent did not prove who it is; nothing was sent to it. "
        "Restart the sandbox (POST /sleep with tier stop, then any call)."
    )


@dataclass(frozen=True)
class ExecEvent:
    kind: Literal["started", "stdout", "stderr", "exit"]
    data: bytes = b""
    exit: Exit | None = None
    pid: int = 0


class AgentTooOld(AgentError):
    """The agent proved who it is but speaks a protocol this server no longer does."""

    code = "agent_outdated"
    default_message = (
        "The sandbox's agent is older than this server supports; it is recreated on "
        "its kept workspace when it next wakes (POST /sleep with tier stop, then any call)."
    )


class AgentClient:
    def __init__(self, address: AgentAddress) -> None:
        self.address = address
        # The protocol version the agent announced in its last Welcome (0: none yet).
        self.version = 0

    async def connect(self) -> Channel:
        try:
            if self.address.unix_path:
                reader, writer = await asyncio.open_unix_connection(
                    self.address.unix_path, limit=2**20
                )
            else:
                reader, writer = await asyncio.open_connection(
                    self.address.host, self.address.port, limit=2**20
                )
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as exc:
            raise AgentUnreachable() from exc
        except OSError as exc:
            raise AgentUnreachable(f"The sandbox's agent is not answering: {exc}") from exc
        return Channel(reader, writer)

    async def open(self, request: Message) -> Channel:
        """A connection on which ``request`` was sent to the agent that proved it holds
        the sandbox's key.

        The Hello and the request leave in one write (no extra round trip); an agent
        carries out nothing before it has checked the Hello, and we read nothing the
        agent says before its Welcome is checked.
        """
        key = self.address.key
        if not key:
            raise AgentError(
                "This sandbox has no agent key (it was made by an older version of the "
                "server): delete it and create it again."
            )
        channel = await self.connect()
        try:
            # A network listener challenges first (see protocol.Challenge).
            challenge = await self._challenge(channel) if not self.address.unix_path else ""
            greeting = hello(key, challenge)
            channel.writer.write(encode_message(greeting) + encode_message(request))
            await channel.writer.drain()
            self.version = await self._check_welcome(
                channel, key, proven_nonce(greeting.nonce, challenge)
            )
        except (ConnectionError, OSError) as exc:
            await channel.close()
            raise AgentUnreachable() from exc
        except BaseException:
            await channel.close()
            raise
        return channel

    @staticmethod
    async def _challenge(channel: Channel) -> str:
        """The nonce of the Challenge a network listener sends first. A connection
        closed before it is a listener not there yet: a port the engine publishes
        accepts (and closes) connections while the agent behind it is starting."""
        kind, payload = await AgentClient._first_frame(channel, AgentUnreachable())
        try:
            message = decode_untrusted(payload) if kind == Kind.CONTROL else None
        except ProtocolError:
            message = None
        if not isinstance(message, Challenge) or not 16 <= len(message.nonce) <= 128:
            raise AgentImpostor()
        return message.nonce

    @staticmethod
    async def _first_frame(channel: Channel, closed: AgentError | None = None) -> tuple[int, bytes]:
        try:
            frame = await channel.receive()
        except ConnectionResetError as exc:
            # Reset before a single byte came back: a listener that died with our
            # connection in its backlog (an agent killed and restarting). Unreachable,
            # so the caller waits for the new agent, as for a refused connection.
            raise AgentUnreachable() from exc
        except ProtocolError as exc:
            raise AgentProtocolError(f"{exc}.") from exc
        if frame is None:
            raise closed or AgentError(
                "The sandbox's agent closed the connection (did the sandbox stop?)."
            )
        return frame

    @staticmethod
    async def _check_welcome(channel: Channel, key: bytes, nonce: str) -> int:
        """The agent's protocol version, once its Welcome proved it holds the key."""
        kind, payload = await AgentClient._first_frame(channel)
        try:
            welcome = decode_message(payload) if kind == Kind.CONTROL else None
        except ProtocolError:
            welcome = None
        # Anything else, an agent's Error included, is not believed: its code must not
        # become the API's answer (an impostor could answer "unauthorized" or worse).
        if not isinstance(welcome, Welcome) or not valid_proof(key, "agent", nonce, welcome.proof):
            raise AgentImpostor()
        version = welcome.version if isinstance(welcome.version, int) else 0
        if version < OLDEST_COMPATIBLE_VERSION:
            raise AgentTooOld()
        return version

    async def call(self, request: Message) -> Message:
        """A request with exactly one control message in answer."""
        channel = await self.open(request)
        try:
            reply = await receive_message(channel)
        finally:
            await channel.close()
        return reply

    async def ping(self) -> Pong:
        reply = await self.call(Ping())
        if not isinstance(reply, Pong):
            raise AgentError(f"unexpected answer to ping: {reply.type}")
        return reply

    async def wait_ready(self, timeout: float) -> Pong:
        """Ping until the agent answers (it is starting with its container).

        A unix socket appears only once the agent accepts connections (it is renamed
        into place), so its path is watched every few milliseconds (a ``stat``) and
        dialled once it is there: a wake is not rounded up to a backoff step.
        """
        deadline = time.monotonic() + timeout
        path = self.address.unix_path
        delay = 0.002
        while True:
            if path is None or os.path.exists(path):
                try:
                    return await self.ping()
                except AgentUnreachable:
                    pass
            if time.monotonic() > deadline:
                raise AgentUnreachable()
            await asyncio.sleep(delay)
            if path is None:
                delay = min(delay * 1.5, 0.05)


async def exec_events(channel: Channel) -> AsyncGenerator[ExecEvent, None]:
    """The events of a command whose ``Exec`` request was sent on ``channel``:
    started, stdout/stderr chunks, then exit.

    Leaving the iteration early closes the connection, and the agent kills the
    command's process group. Output frames are never empty and the only control
    messages are one ``started`` first and one ``exit`` last: anything else is an
    AgentProtocolError, so an agent cannot keep a call busy with frames that say nothing.
    """
    try:
        started = False
        while True:
            kind, payload = await receive_frame(channel)
            if kind in (Kind.STDOUT, Kind.STDERR):
                if not started or not payload:
                    raise AgentProtocolError("it sent an empty or early output frame of a command.")
                yield ExecEvent("stdout" if kind == Kind.STDOUT else "stderr", payload)
            elif kind == Kind.CONTROL:
                message = decode_control(payload)
                if isinstance(message, Error):
                    raise from_agent(message.code, message.message)
                if isinstance(message, Started) and not started:
                    started = True
                    yield ExecEvent("started", pid=message.pid)
                elif isinstance(message, Exit) and started:
                    yield ExecEvent("exit", exit=message)
                    return
                else:
                    raise AgentProtocolError(f"it sent {message.type!r} out of turn to a command.")
            else:
                raise AgentProtocolError(f"it sent a frame of kind {kind} to a command.")
    finally:
        await channel.close()


async def receive_frame(channel: Channel) -> tuple[int, bytes]:
    """The next frame; a broken or closed connection is an AgentError that says so,
    a frame over MAX_FRAME (refused from its header, before any of it is read) an
    AgentProtocolError."""
    try:
        frame = await channel.receive()
    except ProtocolError as exc:
        raise AgentProtocolError(f"{exc}.") from exc
    except (ConnectionError, OSError) as exc:
        raise AgentError(f"The connection to the sandbox's agent broke: {exc}") from exc
    if frame is None:
        raise AgentError("The sandbox's agent closed the connection (did the sandbox stop?).")
    return frame


async def receive_message(channel: Channel) -> Message:
    """The next control message; an agent Error becomes the matching SandboxError."""
    kind, payload = await receive_frame(channel)
    if kind != Kind.CONTROL:
        raise AgentProtocolError(f"it sent a frame of kind {kind} where a message was due.")
    message = decode_control(payload)
    if isinstance(message, Error):
        raise from_agent(message.code, message.message)
    return message


def decode_control(payload: bytes) -> Message:
    """A control frame's message, bounded and type-checked (``decode_untrusted``)."""
    try:
        return decode_untrusted(payload)
    except ProtocolError as exc:
        raise AgentProtocolError(f"{exc}.") from exc


def expect(message: Message, cls: type[M]) -> M:
    """``message`` as the answer type the request calls for."""
    if not isinstance(message, cls):
        raise AgentProtocolError(f"it answered {message.type!r} where {cls.type!r} was due.")
    return message


def nested(data: object, cls: type[M], what: str) -> M:
    """A dict inside a message (a listing's item) checked as the message ``cls``
    describes it: an object with those fields, each of its declared type."""
    if not isinstance(data, dict):
        raise AgentProtocolError(f"{what} is {type(data).__name__}, not an object.")
    fields: dict[str, Any] = {k: v for k, v in data.items() if k != "type"}
    try:
        message = Message.from_dict({**fields, "type": cls.type})
        check_types(message)
    except ProtocolError as exc:
        raise AgentProtocolError(f"{what}: {exc}.") from exc
    return message  # type: ignore[return-value]


__all__ = [
    "AgentClient",
    "AgentProtocolError",
    "AgentTooOld",
    "AgentUnreachable",
    "ExecEvent",
    "SandboxError",
    "decode_control",
    "exec_events",
    "expect",
    "nested",
    "receive_frame",
    "receive_message",
]
