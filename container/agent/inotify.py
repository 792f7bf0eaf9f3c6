"""Watching a directory tree with Linux inotify, as the files API's change events.

``Inotify`` is the kernel interface (through libc with ctypes: the agent has the
standard library only); ``Watcher`` keeps one watch per directory of a tree, follows
directories as they are created, moved and deleted, and turns raw inotify events
into the API's events: ``{"type": create|modify|delete|move|overflow, "path",
"is_dir"[, "from"]}``. A move is a MOVED_FROM and MOVED_TO pair sharing a cookie; a
MOVED_FROM left unpaired for ``COALESCE`` seconds moved out of the tree: a delete.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

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

Event = dict[str, Any]  # one API event, as sent in FileEvents
RawEvent = tuple[int, int, int, str]  # watch descriptor, mask, cookie, name


class Inotify:
    """One inotify instance (non-blocking, close-on-exec)."""

    _libc: Any = None

    def __init__(self, path: str) -> None:
        fd = self._lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), path)
        self.fd: int = fd

    @classmethod
    def _lib(cls) -> Any:
        if cls._libc is None:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            cls._libc = libc
        return cls._libc

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor; OSError when the kernel refuses."""
        wd = int(self._lib().inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        self._lib().inotify_rm_watch(self.fd, wd)

    def read(self) -> list[RawEvent]:
        """The events queued now (none when there are none: it never blocks)."""
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

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class _Move:
    """A MOVED_FROM waiting for its MOVED_TO."""

    path: str
    is_dir: bool
    at: float


class Watcher:
    """inotify on a directory (and, when recursive, every directory below it).

    Directories named in ``exclude`` are not watched, and names starting with
    ``hidden_prefix`` (the files API's temporary files) are never reported.
    """

    def __init__(self, root: str, recursive: bool, exclude: list[str], hidden_prefix: str) -> None:
        self.root = root
        self.recursive = recursive
        self.exclude = set(exclude)
        self.hidden_prefix = hidden_prefix
        self.inotify = Inotify(root)
        self.fd = self.inotify.fd
        self.paths: dict[int, str] = {}
        self.wds: dict[str, int] = {}
        self.warnings: list[str] = []
        self.moves: dict[int, _Move] = {}  # unpaired MOVED_FROM by cookie

    def close(self) -> None:
        self.inotify.close()

    def add(self, directory: str) -> int | None:
        try:
            wd = self.inotify.add_watch(directory, WATCH_MASK)
        except OSError as exc:
            if directory == self.root:
                raise
            if exc.errno == errno.ENOSPC and not self.warnings:
                self.warnings.append("inotify watch limit reached; some directories are unwatched")
            return None
        self.paths[wd] = directory
        self.wds[directory] = wd
        return wd

    def add_tree(self, directory: str, events: list[Event] | None = None) -> None:
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
            if item.name in self.exclude or item.name.startswith(self.hidden_prefix):
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
                self.inotify.rm_watch(wd)
                self.wds.pop(path, None)
                self.paths.pop(wd, None)

    def excluded(self, path: str) -> bool:
        relative = os.path.relpath(path, self.root)
        parts = relative.split(os.sep)
        return any(p in self.exclude for p in parts) or parts[-1].startswith(self.hidden_prefix)

    def read(self) -> list[RawEvent]:
        return self.inotify.read()

    def translate(self, raw: list[RawEvent]) -> list[Event]:
        """inotify events as API events."""
        events: list[Event] = []
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
                self.moves[cookie] = _Move(path, is_dir, time.monotonic())
                continue
            if self.excluded(path) and not (mask & IN_MOVED_TO):
                continue
            if mask & IN_MOVED_TO:
                self._moved_to(path, is_dir, self.moves.pop(cookie, None), events)
            elif mask & IN_CREATE:
                events.append({"type": "create", "path": path, "is_dir": is_dir})
                if is_dir and self.recursive:
                    self.add_tree(path, events)
            elif mask & IN_DELETE:
                events.append({"type": "delete", "path": path, "is_dir": is_dir})
            elif mask & (IN_MODIFY | IN_CLOSE_WRITE):
                events.append({"type": "modify", "path": path, "is_dir": is_dir})
        return events

    def _moved_to(self, path: str, is_dir: bool, source: _Move | None, events: list[Event]) -> None:
        if is_dir and self.recursive:
            if source and source.path in self.wds:
                self.rename_tree(source.path, path)
            elif not self.excluded(path):
                self.add_tree(path)
        if self.excluded(path):
            if source and not self.excluded(source.path):
                events.append({"type": "delete", "path": source.path, "is_dir": is_dir})
            return
        if source is None or self.excluded(source.path):
            # moved in from outside the watch, or one of our atomic writes landing
            events.append({"type": "create", "path": path, "is_dir": is_dir})
        else:
            events.append({"type": "move", "path": path, "from": source.path, "is_dir": is_dir})

    def expire_moves(self, force: bool) -> list[Event]:
        """A MOVED_FROM with no MOVED_TO left the watched tree: it is a delete."""
        events = []
        now = time.monotonic()
        for cookie, source in list(self.moves.items()):
            if force or now - source.at > COALESCE:
                del self.moves[cookie]
                if source.is_dir:
                    self.forget_tree(source.path)
                if not self.excluded(source.path):
                    events.append({"type": "delete", "path": source.path, "is_dir": source.is_dir})
        return events


def coalesce(events: list[Event]) -> list[Event]:
    """Drop repeats: one ``modify`` per path per batch, none right after a ``create``."""
    result: list[Event] = []
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
