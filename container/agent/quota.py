"""The sandbox's disk quota, kept by the agent.

The engine cannot enforce one here (overlay2's ``--storage-opt size`` needs xfs
with project quotas; the local volume driver has no size option), so the agent
watches: it adds up the blocks allocated under /workspace, the home directory and
the temporary directories (hard links once), and when that passes the quota it

- stops every process holding a file there open for writing (SIGKILL, after a line
  on the process's stderr saying why), and keeps doing so while over the quota;
- makes the files API refuse writes and mkdir with ``disk_quota_exceeded``.

Deleting files brings usage back under the quota and everything works again.

Cheap by design: a full walk (``lstat`` of every entry, on a thread) runs only
after something could have changed (a process ran, a file was written through the
API), at most every ``FULL_SCAN_GAP`` seconds or 20 times its own duration. In
between, each tick follows only the files that processes hold open for writing
(``/proc/*/fd``) and adds their growth. A tick with no process but the agent's
costs one ``pread`` of /proc/loadavg; and as only a request makes the agent start a
process, an idle sandbox's watcher sleeps until the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .dispatch import on, table
from .paths import WORKSPACE
from .protocol import Channel, DiskUsage, DiskUsageInfo

log = logging.getLogger("sandbox_agent")

QUOTA = int(os.environ.get("SANDBOX_AGENT_DISK_QUOTA", "0") or 0)
ROOTS = tuple(
    root
    for root in os.environ.get(
        "SANDBOX_AGENT_DISK_ROOTS", f"{WORKSPACE}:/home/sandbox:/tmp:/var/tmp"
    ).split(":")
    if root
)
TICK = 0.5  # seconds between looks at /proc
BUSY_TICK = 0.1  # ... while a process holds a file open for writing
FULL_SCAN_GAP = 2.0  # at least this long between full walks (or 20x a walk's duration)
OVER_SCAN_GAP = 0.5  # ... while over the quota, so that deleting frees it soon
CODE = "disk_quota_exceeded"
_WRITE_MODES = os.O_WRONLY | os.O_RDWR


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def walk(roots: tuple[str, ...] = ROOTS) -> dict[str, int]:
    """Bytes allocated under each root (blocks, so sparse files count what they use).

    A directory the sandbox user made unreadable is opened up for the walk and its
    mode put back afterwards: hiding data from the count must not work.
    """
    seen: set[tuple[int, int]] = set()
    usage: dict[str, int] = {}
    reopened: list[tuple[str, int]] = []
    try:
        for root in roots:
            try:
                st = os.lstat(root)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            total = st.st_blocks * 512
            seen.add((st.st_dev, st.st_ino))
            stack = [root]
            while stack:
                directory = stack.pop()
                for entry in _entries(directory, reopened):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_nlink > 1 or stat.S_ISDIR(st.st_mode):
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
            usage[root] = total
    finally:
        for directory, mode in reversed(reopened):
            with contextlib.suppress(OSError):
                os.chmod(directory, mode)
    return usage


def _entries(directory: str, reopened: list[tuple[str, int]]) -> Iterator[os.DirEntry[str]]:
    """A directory's entries, streamed (a million files must not become a list)."""
    try:
        it = os.scandir(directory)
    except PermissionError:
        try:  # the sandbox user owns it: open it up (``walk`` closes it again)
            mode = stat.S_IMODE(os.lstat(directory).st_mode)
            os.chmod(directory, mode | stat.S_IRUSR | stat.S_IXUSR)
            reopened.append((directory, mode))
            it = os.scandir(directory)
        except OSError:
            return
    except OSError:
        return
    with it, contextlib.suppress(OSError):
        yield from it


@dataclass
class Writer:
    """A file some processes hold open for writing."""

    path: str
    blocks: int
    pids: set[int] = field(default_factory=set)


def _under_roots(target: str) -> bool:
    return any(target == root or target.startswith(root.rstrip("/") + "/") for root in ROOTS)


def user_pids() -> list[int]:
    """Processes other than tini, the agent's restart loop and the agent itself."""
    ours = {1, os.getpid(), os.getppid()}
    pids = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in ours:
                pids.append(int(name))
    return pids


def writers(pids: list[int]) -> dict[tuple[int, int], Writer]:
    """Files under the roots that these processes hold open for writing, by inode."""
    found: dict[tuple[int, int], Writer] = {}
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith("/") or not _under_roots(target.removesuffix(" (deleted)")):
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = int(info.read().split("flags:", 1)[1].split()[0], 8)
                if not flags & _WRITE_MODES:
                    continue
                st = os.stat(f"{fd_dir}/{fd}")  # the open file itself, deleted or not
            except (OSError, IndexError, ValueError):
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            writer = found.setdefault((st.st_dev, st.st_ino), Writer(target, st.st_blocks * 512))
            writer.pids.add(pid)
    return found


_loadavg = -1


def _last_pid() -> bytes:
    """The pid namespace's last allocated pid: changes whenever a process started.
    (One pread of a file kept open: the idle tick's only system call.)"""
    global _loadavg
    try:
        if _loadavg < 0:
            _loadavg = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(_loadavg, 128, 0).rsplit(None, 1)[-1]
    except (OSError, IndexError):
        return b""


_CPU_FILES = (
    ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1),  # cgroup v1: nanoseconds
    ("/sys/fs/cgroup/cpu.stat", 1000),  # cgroup v2: "usage_usec N"
)


_cpu_file: tuple[int, int] | None = None  # (fd, scale) of the first file that opened


def container_cpu_ns() -> int | None:
    """CPU time the whole container used so far, if the cgroup shows it."""
    global _cpu_file
    if _cpu_file is None:
        for path, scale in _CPU_FILES:
            try:
                _cpu_file = (os.open(path, os.O_RDONLY | os.O_CLOEXEC), scale)
                break
            except OSError:
                continue
        else:
            _cpu_file = (-1, 0)
    fd, scale = _cpu_file
    if fd < 0:
        return None
    try:
        text = os.pread(fd, 4096, 0)
        if scale == 1:
            return int(text)
        for line in text.splitlines():
            if line.startswith(b"usage_usec "):
                return int(line.split()[1]) * scale
    except (OSError, ValueError):
        pass
    return None


# Others' CPU time since the last walk beyond which files may have changed.
ACTIVE_CPU_NS = 1_000_000
# After a request the watcher looks for the processes it may start this long.
AWAKE_AFTER_REQUEST = 3.0
# A parent whose child was killed for writing over the quota is killed itself if it
# starts another writer within this many seconds.
STRIKE_MEMORY = 30.0


class DiskWatcher:
    def __init__(self, quota: int = QUOTA) -> None:
        self.quota = quota
        self.usage: dict[str, int] = {}  # by root, as of the last full walk
        self.base = 0  # their sum
        # Growth of files held open for writing since they were first seen (or the
        # walk), and of those closed since the last walk.
        self.baselines: dict[tuple[int, int], int] = {}
        self.grown: dict[tuple[int, int], int] = {}
        self.open_growth = 0
        self.closed_growth = 0
        self.measured_at = 0.0
        self.scan_seconds = 0.0
        self.dirty = True  # something may have changed since the last walk
        self.exceeded = False
        self.killed = 0
        self._last_pid = b""
        self.pids: list[int] = []  # processes other than the agent's, as last listed
        self._cpu: tuple[int, int] | None = None  # (container, agent) CPU ns
        self._others_cpu = 0
        self._scan_lock = asyncio.Lock()
        self._kicked = asyncio.Event()
        self._struck: dict[int, float] = {}  # parents of killed writers: when
        self._awake_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.quota > 0

    @property
    def used(self) -> int:
        return self.base + self.closed_growth + self.open_growth

    def changed(self) -> None:
        """The agent changed files itself (a write through the API, a delete ...)."""
        self.dirty = True
        if self.exceeded:
            self.measured_at = 0.0  # measure again at the next tick: it may be over

    def message(self) -> str:
        parts = sorted(self.usage.items(), key=lambda item: -item[1])
        where = ", ".join(f"{root} {_size(n)}" for root, n in parts if n >= 1024**2)
        return (
            f"The sandbox's disk quota is used up: {_size(self.used)} of {_size(self.quota)}"
            + (f" ({where})" if where else "")
            + ". Delete files to write again."
        )

    async def scan(self) -> None:
        async with self._scan_lock:
            self.dirty = False
            self._others_cpu = 0
            started = time.monotonic()
            usage = await asyncio.to_thread(walk)
            current = writers(user_pids())
            self.usage, self.base = usage, sum(usage.values())
            self.baselines = {key: writer.blocks for key, writer in current.items()}
            self.grown = {}
            self.open_growth = self.closed_growth = 0
            self.measured_at = time.monotonic()
            self.scan_seconds = self.measured_at - started
            self._judge(self.used > self.quota)

    def _judge(self, over: bool) -> None:
        """Only a full walk decides (an estimate may overcount a truncated file)."""
        if over != self.exceeded:
            self.exceeded = over
            log.warning("%s", self.message() if over else "disk usage is under the quota again")

    def _follow(self, current: dict[tuple[int, int], Writer]) -> None:
        growth = 0
        for key, writer in current.items():
            before = self.baselines.setdefault(key, writer.blocks)
            self.grown[key] = max(0, writer.blocks - before)
            growth += self.grown[key]
        for key in [key for key in self.baselines if key not in current]:
            del self.baselines[key]
            self.closed_growth += self.grown.pop(key, 0)  # the next walk counts it
            self.dirty = True
        self.open_growth = growth

    def _activity(self) -> bool:
        """Could anything but the agent have changed files since the last look?
        Updates ``self.pids``; /proc is listed only when a process may be running."""
        last_pid, self._last_pid = self._last_pid, _last_pid()
        started = last_pid != self._last_pid
        if started or self.pids:
            self.pids = user_pids()
        if started:
            return True
        if not self.pids:
            return False
        container = container_cpu_ns()
        if container is None:
            return True
        cpu = (container, time.process_time_ns())
        if self._cpu is not None:
            self._others_cpu += (cpu[0] - self._cpu[0]) - (cpu[1] - self._cpu[1])
        self._cpu = cpu
        return self._others_cpu > ACTIVE_CPU_NS

    def _scan_due(self) -> bool:
        gap = OVER_SCAN_GAP if self.exceeded else FULL_SCAN_GAP
        return time.monotonic() - self.measured_at >= max(gap, 20 * self.scan_seconds)

    async def tick(self) -> float:
        """One look; returns how long to wait before the next."""
        if self._activity():
            self.dirty = True
        current = writers(self.pids) if self.pids else {}
        self._follow(current)
        over = self.used > self.quota
        if (over and not self.exceeded) or ((self.dirty or over) and self._scan_due()):
            await self.scan()  # a full walk confirms before anything is stopped
            current = writers(user_pids())
            self._follow(current)
            over = self.used > self.quota
        if over and self.exceeded:
            self._stop_writers(current)
        return BUSY_TICK if current else TICK

    def _stop_writers(self, current: dict[tuple[int, int], Writer]) -> None:
        """Kill each writer's process group (a shell loop that would start the next
        writer goes with it); a parent that keeps starting writers outside its own
        group (an interactive shell's loop) is killed at its second writer."""
        line = f"\nsandbox: process stopped. {self.message()}\n".encode()
        told: set[str] = set()
        ours = {0, 1, os.getpid(), os.getppid()}
        our_group = os.getpgid(0)
        now = time.monotonic()
        for key in [pid for pid, when in self._struck.items() if now - when > STRIKE_MEMORY]:
            del self._struck[key]
        for writer in current.values():
            for pid in writer.pids:
                _tell(pid, line, told)
                parent, group = _parent(pid), _group(pid)
                try:
                    if group not in (0, our_group) and group not in ours:
                        os.killpg(group, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    continue
                self.killed += 1
                log.warning("killed pid %d writing %s (disk quota)", pid, writer.path)
                if parent in ours:
                    continue
                if parent in self._struck:
                    with contextlib.suppress(OSError):
                        os.kill(parent, signal.SIGKILL)
                        log.warning("killed pid %d: it kept starting writers", parent)
                self._struck[parent] = now

    async def refusal(self, adding: int = 0) -> str | None:
        """Why a write through the API must be refused, if so: asked with ``adding=0``
        before it starts (programs may just have written: measure if so), then with
        the bytes received so far before each chunk (cheap unless near the quota)."""
        if not self.enabled:
            return None
        if not adding and self._activity():
            self.dirty = True
        near = self.used + adding > self.quota
        age = time.monotonic() - self.measured_at
        stale = age > 5 * self.scan_seconds if not adding else age > max(0.2, 5 * self.scan_seconds)
        unconfirmed = self.used > self.quota and not self.exceeded  # only a walk decides
        if unconfirmed or ((near or (self.dirty and not adding)) and stale):
            await self.scan()  # files may have changed since: look again
            self._follow(writers(user_pids()))
        if self.used > self.quota:
            return self.message()
        if self.used + adding > self.quota:
            return (
                f"This write would pass the sandbox's disk quota: {_size(self.used)} of "
                f"{_size(self.quota)} are used. Delete files first."
            )
        return None

    def kick(self) -> None:
        """The agent got a request: processes may start (and write) now."""
        self._awake_until = time.monotonic() + AWAKE_AFTER_REQUEST
        self._kicked.set()

    async def run(self) -> None:
        while True:
            try:
                delay = await self.tick()
            except Exception:  # never let the watcher die: log and carry on
                log.exception("disk watcher")
                delay = TICK
            busy = self.pids or self.dirty or self.exceeded
            if busy or time.monotonic() < self._awake_until:
                await asyncio.sleep(delay)
            else:
                # Only the agent runs, and only a request makes it start a process:
                # an idle sandbox costs no wake-ups at all until the next one.
                self._kicked.clear()
                await self._kicked.wait()


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return 0


def _tell(pid: int, line: bytes, told: set[str]) -> None:
    """Write ``line`` to the process's stderr (once per pipe or terminal), unless
    that is a file we are counting."""
    path = f"/proc/{pid}/fd/2"
    try:
        target = os.readlink(path)
        if target in told or (target.startswith("/") and _under_roots(target)):
            return
        told.add(target)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


watcher = DiskWatcher()


def start() -> asyncio.Task[None] | None:
    if not watcher.enabled:
        return None
    return asyncio.get_running_loop().create_task(watcher.run(), name="disk-watcher")


async def handle_usage(request: DiskUsage, channel: Channel) -> None:
    stale = time.monotonic() - watcher.measured_at > max(0.2, 5 * watcher.scan_seconds)
    if watcher.enabled and (request.fresh or not watcher.measured_at) and stale:
        await watcher.scan()
    await channel.send_message(
        DiskUsageInfo(
            used=watcher.used if watcher.enabled else 0,
            quota=watcher.quota,
            exceeded=watcher.exceeded,
            by_root=dict(watcher.usage),
            message=watcher.message() if watcher.exceeded else "",
        )
    )


HANDLERS = table(on(DiskUsage, handle_usage))
