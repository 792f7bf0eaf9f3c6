"""Dial a sandbox's agent and speak ``container/agent/protocol.py`` to it.

One connection per operation; the stream's own flow control is the backpressure
(we read a frame only when the consumer asks for the next event).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

from container.agent.protocol import (
    Channel,
    Error,
    Exit,
    Kind,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Started,
    decode_message,
)
from sandboxes.backends.base import AgentAddress
from sandboxes.errors import AgentError, SandboxError, from_agent


class AgentUnreachable(AgentError):
    """Nothing answers at the agent's address (the container is down or starting)."""

    code = "agent_unreachable"
    default_message = "The sandbox's agent is not answering."


@dataclass(frozen=True)
class ExecEvent:
    kind: Literal["started", "stdout", "stderr", "exit"]
    data: bytes = b""
    exit: Exit | None = None
    pid: int = 0


class AgentClient:
    def __init__(self, address: AgentAddress) -> None:
        self.address = address

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
        channel = await self.connect()
        try:
            await channel.send_message(request)
        except (ConnectionError, OSError) as exc:
            await channel.close()
            raise AgentUnreachable() from exc
        return channel

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
    command's process group.
    """
    try:
        while True:
            kind, payload = await receive_frame(channel)
            if kind == Kind.STDOUT:
                yield ExecEvent("stdout", payload)
            elif kind == Kind.STDERR:
                yield ExecEvent("stderr", payload)
            elif kind == Kind.CONTROL:
                message = decode_message(payload)
                if isinstance(message, Error):
                    raise from_agent(message.code, message.message)
                if isinstance(message, Started):
                    yield ExecEvent("started", pid=message.pid)
                elif isinstance(message, Exit):
                    yield ExecEvent("exit", exit=message)
                    return
    finally:
        await channel.close()


async def receive_frame(channel: Channel) -> tuple[int, bytes]:
    """The next frame; a broken or closed connection is an AgentError that says so."""
    try:
        frame = await channel.receive()
    except (ConnectionError, OSError, ProtocolError) as exc:
        raise AgentError(f"The connection to the sandbox's agent broke: {exc}") from exc
    if frame is None:
        raise AgentError("The sandbox's agent closed the connection (did the sandbox stop?).")
    return frame


async def receive_message(channel: Channel) -> Message:
    """The next control message; an agent Error becomes the matching SandboxError."""
    kind, payload = await receive_frame(channel)
    if kind != Kind.CONTROL:
        raise AgentError(f"expected a control message from the agent, got frame kind {kind}")
    try:
        message = decode_message(payload)
    except ProtocolError as exc:
        raise AgentError(str(exc)) from exc
    if isinstance(message, Error):
        raise from_agent(message.code, message.message)
    return message


__all__ = [
    "AgentClient",
    "AgentUnreachable",
    "ExecEvent",
    "SandboxError",
    "exec_events",
    "receive_frame",
    "receive_message",
]
