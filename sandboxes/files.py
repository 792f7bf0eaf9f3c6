"""Files in a sandbox (API.md section Files), through the agent.

The server never opens a workspace file itself: every operation is a request to the
sandbox's agent, and content moves as DATA frames, so an upload or a download is
streamed end to end with backpressure and never held whole in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from container.agent.protocol import (
    ArchiveDir,
    Channel,
    DeleteFile,
    FileContent,
    FileDone,
    FileEvents,
    FileListing,
    FileWritten,
    Kind,
    ListFiles,
    MakeDir,
    Message,
    MoveFile,
    ProtocolError,
    ReadFile,
    WatchFiles,
    WatchStarted,
    WriteFile,
    WriteReady,
    decode_message,
)
from sandboxes import services
from sandboxes.agent.client import receive_message
from sandboxes.errors import AgentError, PayloadTooLarge, from_agent
from sandboxes.models import Sandbox

# Upload bodies are read and sent to the agent in pieces of this size.
UPLOAD_CHUNK = 1024 * 1024
LIST_LIMIT = 100_000
DEFAULT_EXCLUDE = [".git", "node_modules"]


def _expect(message: Message, cls: type[Any]) -> Any:
    if not isinstance(message, cls):
        raise AgentError(f"unexpected answer from the agent: {message.type}")
    return message


async def _call(sandbox: Sandbox, request: Message, cls: type[Any]) -> Any:
    return _expect(await services.call_agent(sandbox, request), cls)


# --------------------------------------------------------------------- listing


@dataclass
class Listing:
    path: str
    entries: list[dict[str, Any]]
    truncated: bool = False


async def list_dir(sandbox: Sandbox, path: str, recursive: bool = False) -> Listing:
    channel = await services.open_agent(
        sandbox, ListFiles(path=path, recursive=recursive, limit=LIST_LIMIT)
    )
    try:
        entries: list[dict[str, Any]] = []
        while True:
            batch = _expect(await receive_message(channel), FileListing)
            entries.extend(batch.entries)
            if batch.done:
                return Listing(batch.path, entries, batch.truncated)
    finally:
        await channel.close()


# --------------------------------------------------------------------- reading


async def _data(channel: Channel) -> AsyncIterator[bytes]:
    """The DATA frames of a stream until its empty end frame; closes the channel."""
    try:
        while True:
            try:
                frame = await channel.receive()
            except (ConnectionError, OSError, ProtocolError) as exc:
                raise AgentError(f"The connection to the sandbox's agent broke: {exc}") from exc
            if frame is None:
                raise AgentError("The sandbox's agent ended the stream early.")
            kind, payload = frame
            if kind == Kind.DATA:
                if not payload:
                    return
                yield payload
            elif kind == Kind.CONTROL:
                message = decode_message(payload)
                code = getattr(message, "code", "agent_error")
                raise from_agent(code, getattr(message, "message", "the agent failed"))
    finally:
        await channel.close()


@dataclass
class Download:
    """A file (or a range of it) about to be streamed; iterate ``chunks`` once, or
    ``close()`` without reading."""

    info: FileContent
    chunks: AsyncIterator[bytes]
    _channel: Channel

    async def close(self) -> None:
        await self._channel.close()


async def read(sandbox: Sandbox, path: str, offset: int = 0, length: int | None = None) -> Download:
    channel = await services.open_agent(sandbox, ReadFile(path=path, offset=offset, length=length))
    try:
        info = _expect(await receive_message(channel), FileContent)
    except BaseException:
        await channel.close()
        raise
    return Download(info, _data(channel), channel)


async def archive(sandbox: Sandbox, path: str) -> Download:
    channel = await services.open_agent(sandbox, ArchiveDir(path=path))
    try:
        info = _expect(await receive_message(channel), FileContent)
    except BaseException:
        await channel.close()
        raise
    return Download(info, _data(channel), channel)


# --------------------------------------------------------------------- writing

Reader = Callable[[int], bytes]


async def write(
    sandbox: Sandbox, path: str, read_chunk: Reader, max_size: int | None = None
) -> FileWritten:
    """Write a file from a blocking ``read(n)`` source (a request body, an uploaded
    file), chunk by chunk. Beyond ``max_size`` the write is abandoned (413) and the
    target left untouched."""
    channel = await services.open_agent(sandbox, WriteFile(path=path))
    reading: asyncio.Future[bytes] | None = None
    try:
        _expect(await receive_message(channel), WriteReady)
        total = 0
        # The next chunk is read (on a thread) while this one is sent.
        reading = asyncio.ensure_future(asyncio.to_thread(read_chunk, UPLOAD_CHUNK))
        try:
            while chunk := await reading:
                reading = asyncio.ensure_future(asyncio.to_thread(read_chunk, UPLOAD_CHUNK))
                total += len(chunk)
                if max_size is not None and total > max_size:
                    raise PayloadTooLarge(
                        f"The file is larger than FILES_MAX_UPLOAD ({max_size} bytes).",
                        code="payload_too_large",
                    )
                await channel.send(Kind.DATA, chunk)
            await channel.send(Kind.DATA, b"")
        except (ConnectionError, OSError) as exc:
            # The agent stopped reading: it says why (a full disk ...) before it closes.
            with contextlib.suppress(AgentError):
                await receive_message(channel)
            raise AgentError(f"The sandbox's agent stopped the upload: {exc}") from exc
        return _expect(await receive_message(channel), FileWritten)
    finally:
        if reading is not None:
            with contextlib.suppress(Exception):
                await reading  # never leave a thread reading the body behind
        await channel.close()


# --------------------------------------------------------------------- changing the tree


async def make_dir(sandbox: Sandbox, path: str) -> FileDone:
    return await _call(sandbox, MakeDir(path=path), FileDone)


async def move(
    sandbox: Sandbox, source: str, destination: str, overwrite: bool = False
) -> FileDone:
    return await _call(
        sandbox, MoveFile(source=source, destination=destination, overwrite=overwrite), FileDone
    )


async def delete(sandbox: Sandbox, path: str, recursive: bool = False) -> FileDone:
    return await _call(sandbox, DeleteFile(path=path, recursive=recursive), FileDone)


# --------------------------------------------------------------------- watching


@dataclass
class Watch:
    path: str
    events: AsyncIterator[list[dict[str, Any]]]


async def watch(
    sandbox: Sandbox,
    path: str,
    recursive: bool = False,
    exclude: list[str] | None = None,
    keepalive: float = 15.0,
) -> Watch:
    """Start watching; ``events`` yields batches of changes, and an empty batch every
    ``keepalive`` seconds of quiet (so a gone client is noticed)."""
    request = WatchFiles(
        path=path, recursive=recursive, exclude=DEFAULT_EXCLUDE if exclude is None else exclude
    )
    channel = await services.open_agent(sandbox, request)
    try:
        started = _expect(await receive_message(channel), WatchStarted)
    except BaseException:
        await channel.close()
        raise
    return Watch(started.path, _watch_events(channel, keepalive))


async def _watch_events(channel: Channel, keepalive: float) -> AsyncIterator[list[dict[str, Any]]]:
    try:
        while True:
            receiving = asyncio.ensure_future(channel.receive())
            try:
                while not receiving.done():
                    done, _ = await asyncio.wait({receiving}, timeout=keepalive)
                    if not done:
                        yield []
                frame = receiving.result()
            except (ConnectionError, OSError, ProtocolError):
                return
            finally:
                receiving.cancel()
            if frame is None:
                return  # the watched directory is gone: the agent ended the watch
            kind, payload = frame
            if kind != Kind.CONTROL:
                continue
            message = decode_message(payload)
            if isinstance(message, FileEvents):
                yield message.events
    finally:
        await channel.close()
