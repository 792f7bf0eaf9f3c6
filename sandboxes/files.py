"""Files in a sandbox (docs/api.md, Files), through the agent.

The server never opens a workspace file itself: every operation is a request to the
sandbox's agent, and content moves as DATA frames, so an upload or a download is
streamed end to end with backpressure and never held whole in memory.

What the agent answers is checked before it is used: a listing holds at most
LIST_LIMIT well-formed entries, a read at most the bytes its ``FileContent``
announced; anything else ends the call with AgentProtocolError (502).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from container.agent.protocol import (
    ArchiveDir,
    Channel,
    DeleteFile,
    Error,
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
    conforms,
)
from sandboxes import agentconn
from sandboxes.agent.client import decode_control, receive_message
from sandboxes.errors import (
    AgentError,
    AgentProtocolError,
    PayloadTooLarge,
    SandboxError,
    from_agent,
)
from sandboxes.models import Sandbox

# Upload bodies are read and sent to the agent in pieces of this size.
UPLOAD_CHUNK = 1024 * 1024
LIST_LIMIT = 100_000
DEFAULT_EXCLUDE = [".git", "node_modules"]

M = TypeVar("M", bound=Message)


def _expect(message: Message, cls: type[M]) -> M:
    if not isinstance(message, cls):
        raise AgentProtocolError(f"it answered {message.type!r} where {cls.type!r} was due.")
    return message


async def _call(sandbox: Sandbox, request: Message, cls: type[M]) -> M:
    return _expect(await agentconn.call_agent(sandbox, request), cls)


# --------------------------------------------------------------------- listing


@dataclass
class Listing:
    path: str
    entries: list[dict[str, Any]]
    truncated: bool = False


# A listing entry: field -> its type (``target`` only for symlinks).
ENTRY_FIELDS: dict[str, Any] = {
    "name": str,
    "path": str,
    "type": str,
    "size": int,
    "modified": str,
    "target": str | None,
}


def _entry(data: object) -> dict[str, Any]:
    """A listing entry as the API shows it: its known fields, each of the right type."""
    if not isinstance(data, dict):
        raise AgentProtocolError(f"a listing entry is {type(data).__name__}, not an object.")
    for name, hint in ENTRY_FIELDS.items():
        if (name in data or name != "target") and not conforms(data.get(name), hint):
            raise AgentProtocolError(f"the {name!r} of a listing entry is missing or mistyped.")
    return {name: data[name] for name in ENTRY_FIELDS if name in data}


async def list_dir(sandbox: Sandbox, path: str, recursive: bool = False) -> Listing:
    """The entries under ``path``: at most LIST_LIMIT, asked for in the request and
    enforced here, in batches that each carry some (so the number of frames is
    bounded too)."""
    channel = await agentconn.open_agent(
        sandbox, ListFiles(path=path, recursive=recursive, limit=LIST_LIMIT)
    )
    try:
        entries: list[dict[str, Any]] = []
        while True:
            batch = _expect(await receive_message(channel), FileListing)
            if len(entries) + len(batch.entries) > LIST_LIMIT:
                raise AgentProtocolError(f"it listed more than the {LIST_LIMIT} entries asked for.")
            if not batch.done and not batch.entries:
                raise AgentProtocolError("it sent an empty batch of a listing.")
            entries.extend(_entry(item) for item in batch.entries)
            if batch.done:
                return Listing(batch.path, entries, batch.truncated)
    finally:
        await channel.close()


# --------------------------------------------------------------------- reading


async def _data(channel: Channel, limit: int | None = None) -> AsyncIterator[bytes]:
    """The DATA frames of a stream until its empty end frame; closes the channel.

    ``limit``: the most bytes the agent may send (the length it announced for a
    read, which the response's Content-Length was set from; the quota's worth for an
    archive); more is an AgentProtocolError.
    """
    total = 0
    try:
        while True:
            try:
                frame = await channel.receive()
            except ProtocolError as exc:
                raise AgentProtocolError(f"{exc}.") from exc
            except (ConnectionError, OSError) as exc:
                raise AgentError(f"The connection to the sandbox's agent broke: {exc}") from exc
            if frame is None:
                raise AgentError("The sandbox's agent ended the stream early.")
            kind, payload = frame
            if kind == Kind.DATA:
                if not payload:
                    return
                total += len(payload)
                if limit is not None and total > limit:
                    raise AgentProtocolError(f"it sent more than the {limit} bytes it may.")
                yield payload
            elif kind == Kind.CONTROL:
                raise _stream_error(decode_control(payload))
            else:
                raise AgentProtocolError(f"it sent a frame of kind {kind} in a file's content.")
    finally:
        await channel.close()


def _stream_error(message: Message) -> SandboxError:
    """What a control message in the middle of a content stream means: its Error."""
    if isinstance(message, Error):
        return from_agent(message.code, message.message)
    return AgentProtocolError(f"it sent {message.type!r} in a file's content.")


def _content(message: Message, wanted: int | None = None) -> FileContent:
    """A ``FileContent`` whose numbers make sense and whose date fits in a header."""
    info = _expect(message, FileContent)
    if min(info.size, info.offset, info.length) < 0:
        raise AgentProtocolError("it announced a negative size, offset or length.")
    if wanted is not None and info.length > wanted:
        raise AgentProtocolError(f"it announced {info.length} bytes where {wanted} were asked for.")
    if not info.modified.isprintable() or len(info.modified) > 64:
        raise AgentProtocolError("it announced a modification date that is not one.")
    return info


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
    channel = await agentconn.open_agent(sandbox, ReadFile(path=path, offset=offset, length=length))
    try:
        info = _content(await receive_message(channel), length)
    except BaseException:
        await channel.close()
        raise
    return Download(info, _data(channel, info.length), channel)


def archive_limit() -> int | None:
    """The most bytes a directory's tar.gz may take: what the disk quota lets a
    sandbox hold, with room for tar headers and gzip (None: no quota, no bound).
    Whoever keeps an archive (a course reset, on the server's disk) relies on it."""
    quota = int(settings.SANDBOX_DISK_QUOTA)
    return quota + quota // 4 + 64 * 1024 * 1024 if quota > 0 else None


async def archive(sandbox: Sandbox, path: str) -> Download:
    channel = await agentconn.open_agent(sandbox, ArchiveDir(path=path))
    try:
        info = _content(await receive_message(channel))
    except BaseException:
        await channel.close()
        raise
    return Download(info, _data(channel, archive_limit()), channel)


# --------------------------------------------------------------------- writing

Reader = Callable[[int], bytes]


async def write(
    sandbox: Sandbox, path: str, read_chunk: Reader, max_size: int | None = None
) -> FileWritten:
    """Write a file from a blocking ``read(n)`` source (a request body, an uploaded
    file), chunk by chunk. Beyond ``max_size`` the write is abandoned (413) and the
    target left untouched."""
    channel = await agentconn.open_agent(sandbox, WriteFile(path=path))
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
    channel = await agentconn.open_agent(sandbox, request)
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
            # The events stream is already open: a broken message can only end it.
            if kind != Kind.CONTROL:
                return
            try:
                message = decode_control(payload)
            except AgentProtocolError:
                return
            if not isinstance(message, FileEvents):
                return
            yield message.events
    finally:
        await channel.close()
