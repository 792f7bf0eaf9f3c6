"""Files and file watching.

The agent runs inside the container as the sandbox user, so every path it opens,
and every symlink it follows, resolves inside the container: that is the isolation
boundary. A link to ``/etc/shadow`` reaches the container's own file, which the
sandbox user may not read (``permission_denied``), never a host file.

Content moves as DATA frames in both directions, so no file is ever held whole in
memory. Writes go to a temporary file in the target's directory and are renamed
over the target at the end: readers and concurrent writers see one complete
version, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from . import quota
from .dispatch import on, table
from .failures import AgentFailure, from_os_error
from .inotify import COALESCE, Event, Watcher, coalesce
from .paths import WORKSPACE, resolve_path
from .protocol import (
    ArchiveDir,
    Channel,
    DeleteFile,
    FileContent,
    FileDone,
    FileEvents,
    FileInfo,
    FileListing,
    FileWritten,
    Kind,
    ListFiles,
    MakeDir,
    MoveFile,
    ReadFile,
    StatFile,
    WatchFiles,
    WatchStarted,
    WriteFile,
    WriteReady,
)

# File content travels in frames of this size (well below protocol.MAX_FRAME).
DATA_CHUNK = 1024 * 1024
LISTING_BATCH = 1000
# Temporary files of writes in progress carry this prefix (the watcher hides them).
TEMP_PREFIX = ".sbx-write-"


def _path(raw: object) -> str:
    if not isinstance(raw, str) or not raw:
        raise AgentFailure("bad_request", "path is required.")
    if "\0" in raw:
        raise AgentFailure("bad_request", "path must not contain NUL bytes.")
    return resolve_path(raw)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "file"


def entry(path: str, st: os.stat_result | None = None) -> dict[str, Any]:
    st = st or os.lstat(path)
    item: dict[str, Any] = {
        "name": os.path.basename(path) or path,
        "path": path,
        "type": _kind(st.st_mode),
        "size": st.st_size,
        "modified": _iso(st.st_mtime),
    }
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            item["target"] = os.readlink(path)
    return item


# --------------------------------------------------------------------- listing


def _scan(directory: str) -> list[tuple[str, os.stat_result]]:
    """A directory's entries but the temporary files of writes in progress (listings
    show a file once it is whole, as the watcher does)."""
    with os.scandir(directory) as it:
        items = sorted((e for e in it if not e.name.startswith(TEMP_PREFIX)), key=lambda e: e.name)
    result = []
    for item in items:
        try:
            result.append((item.path, item.stat(follow_symlinks=False)))
        except OSError:
            continue  # vanished meanwhile
    return result


def _walk(root: str, recursive: bool) -> Iterator[dict[str, Any]]:
    """Entries in pre-order (each directory followed by what is in it), sorted by name."""
    stack = [iter(_scan(root))]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        path, st = item
        yield entry(path, st)
        if recursive and stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):  # an unreadable one is listed, not walked
                stack.append(iter(_scan(path)))


def _directory(path: str) -> tuple[str, os.stat_result]:
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise AgentFailure("not_a_directory", f"{path} is a file, not a directory.")
    return path, st


async def handle_list(request: ListFiles, channel: Channel) -> None:
    root, _ = _directory(_path(request.path or WORKSPACE))
    walker = _walk(root, request.recursive)
    limit = max(1, request.limit)
    # The walk runs on a thread, a batch at a time: a big tree never stalls the agent.
    entries = await asyncio.to_thread(_take, walker, min(LISTING_BATCH, limit))
    count = len(entries)
    while len(entries) == LISTING_BATCH and count < limit:
        await channel.send_message(FileListing(path=root, entries=entries, done=False))
        entries = await asyncio.to_thread(_take, walker, min(LISTING_BATCH, limit - count))
        count += len(entries)
    truncated = count >= limit and bool(await asyncio.to_thread(_take, walker, 1))
    await channel.send_message(
        FileListing(path=root, entries=entries, done=True, truncated=truncated)
    )


def _take(walker: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [item for _, item in zip(range(n), walker, strict=False)]


async def handle_stat(request: StatFile, channel: Channel) -> None:
    path = _path(request.path)
    item = entry(path)
    await channel.send_message(
        FileInfo(
            name=item["name"],
            path=path,
            kind=item["type"],
            size=item["size"],
            modified=item["modified"],
        )
    )


# --------------------------------------------------------------------- reading


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    # O_NONBLOCK: opening a FIFO must not hang the agent; it is refused below.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise AgentFailure("is_a_directory", f"{path} is a directory, not a file.")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise AgentFailure("bad_request", f"{path} is not a regular file.")
    os.set_blocking(fd, True)
    return fd, st


async def handle_read(request: ReadFile, channel: Channel) -> None:
    path = _path(request.path)
    fd, st = _open_regular(path)
    try:
        size = st.st_size
        offset = request.offset
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        length = size - start
        if request.length is not None:
            length = max(0, min(request.length, length))
        await channel.send_message(
            FileContent(
                path=path, size=size, offset=start, length=length, modified=_iso(st.st_mtime)
            )
        )
        remaining = length
        position = start
        while remaining > 0:
            chunk = await asyncio.to_thread(os.pread, fd, min(DATA_CHUNK, remaining), position)
            if not chunk:
                break  # the file shrank while it was read
            await channel.send(Kind.DATA, chunk)
            position += len(chunk)
            remaining -= len(chunk)
        await channel.send(Kind.DATA, b"")
    finally:
        os.close(fd)


# --------------------------------------------------------------------- writing

_UMASK = os.umask(0)
os.umask(_UMASK)


def _make_parents(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:
        raise AgentFailure(
            "not_a_directory", f"{directory} (or one of its parents) is a file, not a directory."
        ) from None


def _write_target(path: str) -> str:
    """Writes go through a symlink to its target (inside the container)."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    if os.path.isdir(path):
        raise AgentFailure("is_a_directory", f"{path} is a directory, not a file.")
    return path


async def _check_quota(adding: int = 0) -> None:
    """Refuse to add to a sandbox over its disk quota (see quota.py)."""
    reason = await quota.watcher.refusal(adding)
    if reason:
        raise AgentFailure(quota.CODE, reason)


async def _drain(channel: Channel) -> None:
    """Read what the client still sends after a failed write, so that it reads the
    error instead of a connection reset."""
    with contextlib.suppress(ConnectionError, OSError):
        while (frame := await channel.receive()) is not None:
            if frame[0] == Kind.DATA and not frame[1]:
                return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def handle_write(request: WriteFile, channel: Channel) -> None:
    path = _write_target(_path(request.path))
    await _check_quota()
    directory, name = os.path.split(path)
    _make_parents(directory)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-" + name[:80], dir=directory)
    try:
        written = await _receive_into(fd, temp, path, channel)
    except (AgentFailure, OSError) as exc:
        if isinstance(exc, ConnectionError):
            raise
        # Answered here, not by the connection handler: the client is still sending.
        failure = exc if isinstance(exc, AgentFailure) else from_os_error(exc, request.path)
        await channel.send_message(failure.to_error())
        return await _drain(channel)
    if written is not None:
        await channel.send_message(written)


async def _receive_into(fd: int, temp: str, path: str, channel: Channel) -> FileWritten | None:
    """Say ``WriteReady``, then DATA frames into ``temp`` (open as ``fd``), renamed over
    ``path`` at the empty frame; None when the client went away first (the target is
    left untouched)."""
    size = 0
    done = False
    # One chunk is written (on a thread) while the next one is received.
    writing: asyncio.Future[None] | None = None
    try:
        await channel.send_message(WriteReady(path=path))
        while True:
            frame = await channel.receive()
            if frame is None:
                return None
            kind, payload = frame
            if kind != Kind.DATA:
                continue
            if writing is not None:
                await writing
                writing = None
            if not payload:
                break
            await _check_quota(size + len(payload))
            writing = asyncio.ensure_future(asyncio.to_thread(_write_all, fd, payload))
            size += len(payload)
        try:
            previous = os.stat(path)
            mode = stat.S_IMODE(previous.st_mode)
            created = False
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
            created = True
        os.fchmod(fd, mode)
        os.close(fd)
        fd = -1
        os.replace(temp, path)
        done = True
        quota.watcher.changed()
        return FileWritten(path=path, size=size, created=created)
    finally:
        if writing is not None:
            with contextlib.suppress(OSError):
                await asyncio.shield(writing)
        if fd >= 0:
            os.close(fd)
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(temp)


# --------------------------------------------------------------------- changing the tree


async def handle_mkdir(request: MakeDir, channel: Channel) -> None:
    path = _path(request.path)
    existed = os.path.lexists(path)
    if existed and not os.path.isdir(path):
        raise AgentFailure("already_exists", f"{path} exists and is not a directory.")
    if not existed:
        await _check_quota()
    _make_parents(path)
    await channel.send_message(FileDone(path=path, created=not existed))


async def handle_move(request: MoveFile, channel: Channel) -> None:
    source = _path(request.source)
    destination = _path(request.destination)
    if not os.path.lexists(source):
        raise AgentFailure("not_found", f"No such file or directory: {source}")
    if source in ("/", WORKSPACE):
        raise AgentFailure("bad_request", f"{source} cannot be moved.")
    if destination.startswith(source.rstrip("/") + "/"):
        raise AgentFailure("bad_request", f"Cannot move {source} into itself.")
    if os.path.lexists(destination) and source != destination:
        if not request.overwrite:
            raise AgentFailure(
                "already_exists", f"{destination} already exists; pass overwrite to replace it."
            )
        if os.path.isdir(destination) and not os.path.islink(destination):
            raise AgentFailure("is_a_directory", f"{destination} is a directory; delete it first.")
    _make_parents(os.path.dirname(destination))
    try:
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # another filesystem: copy, then delete
        await asyncio.to_thread(shutil.move, source, destination)
    await channel.send_message(FileDone(path=destination, created=True))


async def handle_delete(request: DeleteFile, channel: Channel) -> None:
    path = _path(request.path)
    if path in ("/", WORKSPACE):
        raise AgentFailure("bad_request", f"{path} itself cannot be deleted.")
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        if request.recursive:
            await asyncio.to_thread(shutil.rmtree, path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)  # a symlink is removed, never followed
    quota.watcher.changed()
    await channel.send_message(FileDone(path=path))


# --------------------------------------------------------------------- archives


class _FrameWriter(io.RawIOBase):
    """A file object for a worker thread that hands each write to the event loop,
    blocking while the loop's bounded queue is full (backpressure)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        self.loop = loop
        self.queue = queue
        self.cancelled = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.cancelled.is_set():
            raise OSError(errno.EPIPE, "the client went away")
        chunk = bytes(data)
        asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()
        return len(chunk)


def _archive(root: str, out: io.BufferedWriter) -> None:
    base = os.path.basename(root.rstrip("/")) or "root"
    with tarfile.open(fileobj=out, mode="w|gz") as tar:
        tar.add(root, arcname=base, recursive=False)
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(directory, name)
                arcname = os.path.join(base, os.path.relpath(path, root))
                try:
                    tar.add(path, arcname=arcname, recursive=False)
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        raise
                    continue  # unreadable: left out, as `tar` would warn and go on
    out.flush()


async def handle_archive(request: ArchiveDir, channel: Channel) -> None:
    root, st = _directory(_path(request.path or WORKSPACE))
    os.listdir(root)  # unreadable: fail before the download starts
    await channel.send_message(FileContent(path=root, modified=_iso(st.st_mtime)))
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
    raw = _FrameWriter(loop, queue)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            _archive(root, io.BufferedWriter(raw, buffer_size=DATA_CHUNK))
        except BaseException as exc:  # reported to the loop below
            failure.append(exc)
        finally:
            if not raw.cancelled.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    thread = threading.Thread(target=work, name="archive", daemon=True)
    thread.start()
    try:
        while (chunk := await queue.get()) is not None:
            await channel.send(Kind.DATA, chunk)
    finally:
        if thread.is_alive():
            raw.cancelled.set()
            while thread.is_alive():  # unblock a pending put, then let it stop
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.sleep(0.01)
    if failure:
        problem = failure[0]
        if isinstance(problem, OSError):
            raise from_os_error(problem, root)
        raise AgentFailure("agent_error", str(problem))
    await channel.send(Kind.DATA, b"")


# --------------------------------------------------------------------- watching


def _watch_root(watcher: Watcher, root: str) -> None:
    try:
        watcher.add_tree(root)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:  # not the disk: the kernel's limit on watches
            raise
        raise AgentFailure(
            "limit_reached",
            "The sandbox may set no more inotify watches (fs.inotify.max_user_watches): "
            "end other watches, or watch fewer directories (recursive=false, exclude).",
        ) from None


async def handle_watch(request: WatchFiles, channel: Channel) -> None:
    root, _ = _directory(_path(request.path or WORKSPACE))
    exclude = [e for e in request.exclude if isinstance(e, str) and e]
    watcher = Watcher(root, request.recursive, exclude, hidden_prefix=TEMP_PREFIX)
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(watcher.fd, ready.set)
    client_gone = asyncio.ensure_future(channel.receive())
    try:
        _watch_root(watcher, root)
        await channel.send_message(WatchStarted(path=root, watches=len(watcher.paths)))
        while True:
            waiter = asyncio.ensure_future(ready.wait())
            timeout = COALESCE if watcher.moves else None
            done, _ = await asyncio.wait(
                {waiter, client_gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if client_gone in done:
                waiter.cancel()
                return
            if waiter not in done:
                waiter.cancel()
                pending = watcher.expire_moves(force=True)
                if pending:
                    await channel.send_message(FileEvents(events=coalesce(pending)))
                continue
            # Gather a little more so that a burst (a build, a checkout) is one batch.
            await asyncio.sleep(COALESCE)
            ready.clear()
            events: list[Event] = []
            while raw := watcher.read():
                events.extend(watcher.translate(raw))
            events.extend(watcher.expire_moves(force=False))
            if watcher.warnings:
                events.append({"type": "overflow", "path": root, "is_dir": True})
                watcher.warnings.clear()
            if events:
                await channel.send_message(FileEvents(events=coalesce(events)))
            if root not in watcher.wds:
                return  # the watched directory itself is gone
    finally:
        client_gone.cancel()
        loop.remove_reader(watcher.fd)
        watcher.close()


HANDLERS = table(
    on(ListFiles, handle_list),
    on(StatFile, handle_stat),
    on(ReadFile, handle_read),
    on(WriteFile, handle_write),
    on(MakeDir, handle_mkdir),
    on(MoveFile, handle_move),
    on(DeleteFile, handle_delete),
    on(ArchiveDir, handle_archive),
    on(WatchFiles, handle_watch),
)
