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
import ctypes
import ctypes.util
import errno
import io
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from . import quota
from .execs import WORKSPACE, resolve_path
from .protocol import (
    ArchiveDir,
    Channel,
    DeleteFile,
    Error,
    FileContent,
    FileDone,
    FileEvents,
    FileInfo,
    FileListing,
    FileWritten,
    Kind,
    ListFiles,
    MakeDir,
    Message,
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


class FileError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error_for(exc: OSError, path: str) -> FileError:
    code = exc.errno
    where = exc.filename if isinstance(exc.filename, str) else path
    if code == errno.ENOENT:
        return FileError("not_found", f"No such file or directory: {where}")
    if code == errno.EISDIR:
        return FileError("is_a_directory", f"{where} is a directory, not a file.")
    if code == errno.ENOTDIR:
        return FileError("not_a_directory", f"{where} (or one of its parents) is not a directory.")
    if code in (errno.EACCES, errno.EPERM):
        return FileError(
            "permission_denied", f"Permission denied: {where} (the sandbox user may not do that)."
        )
    if code == errno.EEXIST:
        return FileError("already_exists", f"{where} already exists.")
    if code == errno.ENOTEMPTY:
        return FileError(
            "directory_not_empty", f"{where} is not empty; pass recursive=1 to delete it."
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return FileError("payload_too_large", "No space left on the sandbox's disk.")
    if code == errno.ELOOP:
        return FileError("bad_request", f"Too many levels of symbolic links: {where}")
    if code == errno.ENAMETOOLONG:
        return FileError("bad_request", f"File name too long: {where}")
    if code == errno.EINVAL:
        return FileError("bad_request", f"Invalid operation on {where}: {exc.strerror}")
    return FileError("agent_error", f"{where}: {exc.strerror or exc}")


def _path(raw: object) -> str:
    if not isinstance(raw, str) or not raw:
        raise FileError("bad_request", "path is required.")
    if "\0" in raw:
        raise FileError("bad_request", "path must not contain NUL bytes.")
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


async def _fail(channel: Channel, exc: FileError) -> None:
    await channel.send_message(Error(code=exc.code, message=exc.message))


# --------------------------------------------------------------------- listing


def _scan(directory: str) -> list[tuple[str, os.stat_result]]:
    with os.scandir(directory) as it:
        items = sorted(it, key=lambda e: e.name)
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


async def handle_list(request: Message, channel: Channel) -> None:
    if not isinstance(request, ListFiles):
        raise TypeError(request)
    try:
        root = _path(request.path or WORKSPACE)
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise FileError("not_a_directory", f"{root} is a file, not a directory.")
        walker = _walk(root, request.recursive)
        limit = max(1, request.limit)
        # The walk runs on a thread, a batch at a time: a big tree never stalls the agent.
        entries = await asyncio.to_thread(_take, walker, min(LISTING_BATCH, limit))
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
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


async def handle_stat(request: Message, channel: Channel) -> None:
    if not isinstance(request, StatFile):
        raise TypeError(request)
    try:
        path = _path(request.path)
        item = entry(path)
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
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
        raise FileError("is_a_directory", f"{path} is a directory, not a file.")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileError("bad_request", f"{path} is not a regular file.")
    os.set_blocking(fd, True)
    return fd, st


async def handle_read(request: Message, channel: Channel) -> None:
    if not isinstance(request, ReadFile):
        raise TypeError(request)
    try:
        path = _path(request.path)
        fd, st = _open_regular(path)
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
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
    except OSError as exc:
        if isinstance(exc, ConnectionError):
            raise
        await _fail(channel, _error_for(exc, request.path))
    finally:
        os.close(fd)


# --------------------------------------------------------------------- writing

_UMASK = os.umask(0)
os.umask(_UMASK)


def _make_parents(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:
        raise FileError(
            "not_a_directory", f"{directory} (or one of its parents) is a file, not a directory."
        ) from None


def _write_target(path: str) -> str:
    """Writes go through a symlink to its target (inside the container)."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    if os.path.isdir(path):
        raise FileError("is_a_directory", f"{path} is a directory, not a file.")
    return path


async def _check_quota(adding: int = 0) -> None:
    """Refuse to add to a sandbox over its disk quota (see quota.py)."""
    reason = await quota.watcher.refusal(adding)
    if reason:
        raise FileError(quota.CODE, reason)


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


async def handle_write(request: Message, channel: Channel) -> None:
    if not isinstance(request, WriteFile):
        raise TypeError(request)
    try:
        path = _write_target(_path(request.path))
        await _check_quota()
        directory, name = os.path.split(path)
        _make_parents(directory)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-" + name[:80], dir=directory)
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
    size = 0
    done = False
    # One chunk is written (on a thread) while the next one is received.
    writing: asyncio.Future[None] | None = None
    try:
        await channel.send_message(WriteReady(path=path))
        while True:
            frame = await channel.receive()
            if frame is None:
                return  # the client went away: the target is left untouched
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
    except FileError as exc:
        await _fail(channel, exc)
        return await _drain(channel)
    except OSError as exc:
        if isinstance(exc, ConnectionError):
            raise
        await _fail(channel, _error_for(exc, request.path))
        return await _drain(channel)
    finally:
        if writing is not None:
            with contextlib.suppress(OSError):
                await asyncio.shield(writing)
        if fd >= 0:
            os.close(fd)
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    await channel.send_message(FileWritten(path=path, size=size, created=created))


# --------------------------------------------------------------------- changing the tree


async def handle_mkdir(request: Message, channel: Channel) -> None:
    if not isinstance(request, MakeDir):
        raise TypeError(request)
    try:
        path = _path(request.path)
        existed = os.path.lexists(path)
        if existed and not os.path.isdir(path):
            raise FileError("already_exists", f"{path} exists and is not a directory.")
        if not existed:
            await _check_quota()
        _make_parents(path)
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
    await channel.send_message(FileDone(path=path, created=not existed))


async def handle_move(request: Message, channel: Channel) -> None:
    if not isinstance(request, MoveFile):
        raise TypeError(request)
    try:
        source = _path(request.source)
        destination = _path(request.destination)
        if not os.path.lexists(source):
            raise FileError("not_found", f"No such file or directory: {source}")
        if source in ("/", WORKSPACE):
            raise FileError("bad_request", f"{source} cannot be moved.")
        if destination.startswith(source.rstrip("/") + "/"):
            raise FileError("bad_request", f"Cannot move {source} into itself.")
        if os.path.lexists(destination) and source != destination:
            if not request.overwrite:
                raise FileError(
                    "already_exists", f"{destination} already exists; pass overwrite to replace it."
                )
            if os.path.isdir(destination) and not os.path.islink(destination):
                raise FileError("is_a_directory", f"{destination} is a directory; delete it first.")
        _make_parents(os.path.dirname(destination))
        try:
            os.replace(source, destination)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # another filesystem: copy, then delete
            await asyncio.to_thread(shutil.move, source, destination)
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.source))
    await channel.send_message(FileDone(path=destination, created=True))


async def handle_delete(request: Message, channel: Channel) -> None:
    if not isinstance(request, DeleteFile):
        raise TypeError(request)
    try:
        path = _path(request.path)
        if path in ("/", WORKSPACE):
            raise FileError("bad_request", f"{path} itself cannot be deleted.")
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            if request.recursive:
                await asyncio.to_thread(shutil.rmtree, path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)  # a symlink is removed, never followed
        quota.watcher.changed()
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
    await channel.send_message(FileDone(path=path))


# --------------------------------------------------------------------- archives


class _FrameWriter(io.RawIOBase):
    """A file object for a worker thread that hands each write to the event loop,
    blocking while the loop's bounded queue is full (backpressure)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]):
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


async def handle_archive(request: Message, channel: Channel) -> None:
    if not isinstance(request, ArchiveDir):
        raise TypeError(request)
    try:
        root = _path(request.path or WORKSPACE)
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            raise FileError("not_a_directory", f"{root} is a file, not a directory.")
        os.listdir(root)  # unreadable: fail before the download starts
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
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
        exc = failure[0]
        error = (
            _error_for(exc, root)
            if isinstance(exc, OSError)
            else FileError("agent_error", str(exc))
        )
        return await _fail(channel, error)
    await channel.send(Kind.DATA, b"")


# --------------------------------------------------------------------- watching

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

WATCH_MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_EXCL_UNLINK
)
_EVENT = struct.Struct("iIII")
# Changes are gathered this long after the first one, then sent as one batch.
COALESCE = 0.05

_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        _libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return _libc


class Watcher:
    """inotify on a directory (and, when recursive, every directory below it)."""

    def __init__(self, root: str, recursive: bool, exclude: list[str]) -> None:
        self.root = root
        self.recursive = recursive
        self.exclude = set(exclude)
        fd = _lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), root)
        self.fd = fd
        self.paths: dict[int, str] = {}
        self.wds: dict[str, int] = {}
        self.warnings: list[str] = []

    def close(self) -> None:
        os.close(self.fd)

    def add(self, directory: str) -> int | None:
        wd = _lib().inotify_add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            number = ctypes.get_errno()
            if directory == self.root:
                raise OSError(number, os.strerror(number), directory)
            if number == errno.ENOSPC and not self.warnings:
                self.warnings.append("inotify watch limit reached; some directories are unwatched")
            return None
        self.paths[wd] = directory
        self.wds[directory] = wd
        return wd

    def add_tree(self, directory: str, events: list[dict[str, Any]] | None = None) -> None:
        """Watch ``directory`` and below; with ``events``, report what is already there
        (it appeared before its watch could be set)."""
        if self.add(directory) is None or not self.recursive:
            return
        try:
            with os.scandir(directory) as it:
                items = list(it)
        except OSError:
            return
        for item in items:
            if item.name in self.exclude or item.name.startswith(TEMP_PREFIX):
                continue
            is_dir = item.is_dir(follow_symlinks=False)
            if events is not None:
                events.append({"type": "create", "path": item.path, "is_dir": is_dir})
            if is_dir:
                self.add_tree(item.path, events)

    def rename_tree(self, old: str, new: str) -> None:
        prefix = old.rstrip("/") + "/"
        for wd, path in list(self.paths.items()):
            if path == old or path.startswith(prefix):
                moved = new + path[len(old) :]
                self.paths[wd] = moved
                self.wds.pop(path, None)
                self.wds[moved] = wd

    def forget_tree(self, directory: str) -> None:
        """Stop watching a directory that left the watched tree."""
        prefix = directory.rstrip("/") + "/"
        for path, wd in list(self.wds.items()):
            if path == directory or path.startswith(prefix):
                _lib().inotify_rm_watch(self.fd, wd)
                self.wds.pop(path, None)
                self.paths.pop(wd, None)

    def excluded(self, path: str) -> bool:
        relative = os.path.relpath(path, self.root)
        parts = relative.split(os.sep)
        return any(p in self.exclude for p in parts) or parts[-1].startswith(TEMP_PREFIX)

    def read(self) -> list[tuple[int, int, int, str]]:
        try:
            data = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return []
        raw = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset : offset + length].rstrip(b"\0")
            offset += length
            raw.append((wd, mask, cookie, os.fsdecode(name)))
        return raw

    def translate(
        self, raw: list[tuple[int, int, int, str]], moves: dict[int, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """inotify events as API events; ``moves`` holds unpaired MOVED_FROM by cookie."""
        events: list[dict[str, Any]] = []
        for wd, mask, cookie, name in raw:
            if mask & IN_Q_OVERFLOW:
                events.append({"type": "overflow", "path": self.root, "is_dir": True})
                continue
            directory = self.paths.get(wd)
            if directory is None:
                continue
            if mask & IN_IGNORED:
                self.paths.pop(wd, None)
                if self.wds.get(directory) == wd:
                    self.wds.pop(directory, None)
                continue
            is_dir = bool(mask & IN_ISDIR)
            if not name:  # the watched directory itself
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF) and directory == self.root:
                    events.append({"type": "delete", "path": self.root, "is_dir": True})
                continue
            path = os.path.join(directory, name)
            if mask & IN_MOVED_FROM:
                moves[cookie] = {"path": path, "is_dir": is_dir, "at": time.monotonic()}
                continue
            if self.excluded(path) and not (mask & IN_MOVED_TO):
                continue
            if mask & IN_MOVED_TO:
                source = moves.pop(cookie, None)
                if is_dir and self.recursive:
                    if source and source["path"] in self.wds:
                        self.rename_tree(source["path"], path)
                    elif not self.excluded(path):
                        self.add_tree(path)
                if self.excluded(path):
                    if source and not self.excluded(source["path"]):
                        events.append({"type": "delete", "path": source["path"], "is_dir": is_dir})
                    continue
                if source is None or self.excluded(source["path"]):
                    # moved in from outside the watch, or one of our atomic writes landing
                    events.append({"type": "create", "path": path, "is_dir": is_dir})
                else:
                    events.append(
                        {"type": "move", "path": path, "from": source["path"], "is_dir": is_dir}
                    )
            elif mask & IN_CREATE:
                events.append({"type": "create", "path": path, "is_dir": is_dir})
                if is_dir and self.recursive:
                    self.add_tree(path, events)
            elif mask & IN_DELETE:
                events.append({"type": "delete", "path": path, "is_dir": is_dir})
            elif mask & (IN_MODIFY | IN_CLOSE_WRITE):
                events.append({"type": "modify", "path": path, "is_dir": is_dir})
        return events

    def expire_moves(self, moves: dict[int, dict[str, Any]], force: bool) -> list[dict[str, Any]]:
        """A MOVED_FROM with no MOVED_TO left the watched tree: it is a delete."""
        events = []
        now = time.monotonic()
        for cookie, source in list(moves.items()):
            if force or now - source["at"] > COALESCE:
                del moves[cookie]
                if source["is_dir"]:
                    self.forget_tree(source["path"])
                if not self.excluded(source["path"]):
                    events.append(
                        {"type": "delete", "path": source["path"], "is_dir": source["is_dir"]}
                    )
        return events


def coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats: one ``modify`` per path per batch, none right after a ``create``."""
    result: list[dict[str, Any]] = []
    latest: dict[str, str] = {}
    for event in events:
        path = event["path"]
        if event["type"] == "modify" and latest.get(path) in ("create", "modify"):
            continue
        latest[path] = event["type"]
        if event["type"] == "move":
            latest.pop(event["from"], None)
        result.append(event)
    return result


async def handle_watch(request: Message, channel: Channel) -> None:
    if not isinstance(request, WatchFiles):
        raise TypeError(request)
    try:
        root = _path(request.path or WORKSPACE)
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise FileError("not_a_directory", f"{root} is a file, not a directory.")
        exclude = [e for e in request.exclude if isinstance(e, str) and e]
        watcher = Watcher(root, request.recursive, exclude)
    except FileError as exc:
        return await _fail(channel, exc)
    except OSError as exc:
        return await _fail(channel, _error_for(exc, request.path))
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(watcher.fd, ready.set)
    client_gone = asyncio.ensure_future(channel.receive())
    try:
        watcher.add_tree(root)
        await channel.send_message(WatchStarted(path=root, watches=len(watcher.paths)))
        moves: dict[int, dict[str, Any]] = {}
        while True:
            waiter = asyncio.ensure_future(ready.wait())
            timeout = COALESCE if moves else None
            done, _ = await asyncio.wait(
                {waiter, client_gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if client_gone in done:
                waiter.cancel()
                return
            if waiter not in done:
                waiter.cancel()
                pending = watcher.expire_moves(moves, force=True)
                if pending:
                    await channel.send_message(FileEvents(events=coalesce(pending)))
                continue
            # Gather a little more so that a burst (a build, a checkout) is one batch.
            await asyncio.sleep(COALESCE)
            ready.clear()
            events: list[dict[str, Any]] = []
            while raw := watcher.read():
                events.extend(watcher.translate(raw, moves))
            events.extend(watcher.expire_moves(moves, force=False))
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


HANDLERS = {
    ListFiles: handle_list,
    StatFile: handle_stat,
    ReadFile: handle_read,
    WriteFile: handle_write,
    MakeDir: handle_mkdir,
    MoveFile: handle_move,
    DeleteFile: handle_delete,
    ArchiveDir: handle_archive,
    WatchFiles: handle_watch,
}
