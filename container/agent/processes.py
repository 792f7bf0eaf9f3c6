"""Background processes: started by one connection, owned by the agent.

A process outlives the connection that started it and every client that follows
it. Its output is pumped as fast as it is produced into two places: a bounded ring
buffer per stream (the recent tail, for "logs so far" and new followers) and files
under ``LOG_DIR`` (everything, so a follower that falls behind the ring buffer goes
on from disk). Pumping never waits for a follower: each follower keeps its own
offsets and reads at the pace of its own connection, so a slow reader slows only
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

from . import procs, quota
from .dispatch import on, table
from .failures import AgentFailure
from .paths import resolve_path, working_directory
from .protocol import (
    CHUNK,
    Channel,
    Kind,
    LogMatch,
    PortReady,
    ProcessGet,
    ProcessInfo,
    ProcessList,
    ProcessListing,
    ProcessLogs,
    ProcessSignal,
    ProcessStart,
    ProcessStdin,
    ProcessWaitLog,
    ProcessWaitPort,
    signal_number,
)
from .tunnel import listening_ports

T = TypeVar("T")

LOG_DIR = os.environ.get("SANDBOX_AGENT_PROCESS_LOGS", "/tmp/.sandbox-processes")  # noqa: S108
DEFAULT_BUFFER = 1024 * 1024
MAX_BUFFER = 64 * 1024 * 1024
# Exited processes kept for get/logs; the oldest are forgotten beyond this.
KEEP_EXITED = 100
MAX_RUNNING = 256
# After the process exits, output still in its pipes is collected for this long
# (a background child holding a pipe open does not keep the process "running").
_DRAIN_AFTER_EXIT = 0.5
_POLL = 0.1
_MAX_LINE = 64 * 1024
# Bytes written to a process's stdin that it has not read yet, at most (beyond the
# pipe's own buffer). A write that would pass it is refused whole: a process that
# never reads cannot make the agent (or the server) hold its input.
STDIN_BUFFER = 4 * 1024 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class LogStream:
    """One output stream: a ring buffer of its tail plus a file of all of it.

    Offsets are absolute (bytes since the process started); ``start`` is the offset
    of the oldest byte still in memory, ``end`` the total written so far.
    """

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.buffer = bytearray()
        self.start = 0
        self.end = 0
        self.fd: int | None = None
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a reused pid: followers of the old file keep their fd
            self.fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o600)
        except OSError:
            pass  # no room on disk (or no /tmp): memory keeps the tail all the same
        self.disk_ok = self.fd is not None

    def append(self, data: bytes) -> None:
        if quota.watcher.exceeded:
            self.disk_ok = False  # over the disk quota: as if the disk were full
        if self.fd is not None and self.disk_ok:
            try:
                os.write(self.fd, data)
            except OSError:
                self.disk_ok = False  # disk full: memory keeps the tail at least
        self.buffer += data
        self.end += len(data)
        excess = len(self.buffer) - self.limit
        if excess > 0:
            del self.buffer[:excess]
            self.start += excess

    def read(self, offset: int, size: int = CHUNK) -> tuple[int, bytes]:
        """Bytes from ``offset`` (moved up to what is still available), and the offset."""
        if offset < self.start:
            if self.disk_ok and self.fd is not None:
                data = os.pread(self.fd, min(size, self.start - offset), offset)
                if data:
                    return offset, data
            offset = self.start  # the file is gone or short: skip to memory
        begin = offset - self.start
        return offset, bytes(self.buffer[begin : begin + size])

    def tail(self) -> bytes:
        return bytes(self.buffer)

    def close(self, remove: bool = False) -> None:
        if self.fd is not None:
            if remove:  # the file, unless a newer process of the same pid owns it now
                with contextlib.suppress(OSError):
                    if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                        os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class Process:
    def __init__(self, proc: procs.Child, request: ProcessStart, cwd: str, limit: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.command = request.command
        self.cwd = cwd
        self.started_at = _now()
        self.exited_at: str | None = None
        self.exit_code: int | None = None
        self.signal: str | None = None
        self.finished = False  # exited and its output collected
        self.stdin: str | None = "open" if request.stdin and proc.stdin is not None else None
        self.streams = {
            "stdout": LogStream(os.path.join(LOG_DIR, f"{self.pid}.stdout"), limit),
            "stderr": LogStream(os.path.join(LOG_DIR, f"{self.pid}.stderr"), limit),
        }
        self.changed = asyncio.Condition()
        self.tasks = [
            asyncio.create_task(self._pump(proc.stdout, "stdout")),
            asyncio.create_task(self._pump(proc.stderr, "stderr")),
        ]
        self.waiter = asyncio.create_task(self._wait())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _pump(self, reader: asyncio.StreamReader | None, name: str) -> None:
        if reader is None:
            return
        stream = self.streams[name]
        while chunk := await reader.read(CHUNK):
            stream.append(chunk)
            await self._notify()

    async def _wait(self) -> None:
        code = await self.proc.exited()
        self.exited_at = _now()
        self.exit_code, self.signal = procs.exit_status(code)
        await self._notify()
        await asyncio.wait(self.tasks, timeout=_DRAIN_AFTER_EXIT)
        self.finished = True
        await self._notify()

    def info(self) -> ProcessInfo:
        return ProcessInfo(
            pid=self.pid,
            command=self.command,
            cwd=self.cwd,
            status="running" if self.exit_code is None else "exited",
            exit_code=self.exit_code,
            signal=self.signal,
            started_at=self.started_at,
            exited_at=self.exited_at,
            stdin=self.stdin,
        )

    def write_stdin(self, data: bytes) -> None:
        """Queue ``data`` for the process's stdin, or refuse it whole (``AgentFailure``)."""
        writer = self.open_stdin()
        waiting = writer.transport.get_write_buffer_size()
        if waiting + len(data) > STDIN_BUFFER:
            raise AgentFailure(
                "stdin_full",
                f"Process {self.pid} has not read {waiting} bytes of its input yet; "
                f"at most {STDIN_BUFFER} may wait. Retry once it has read some.",
            )
        writer.write(data)

    def close_stdin(self) -> None:
        self.open_stdin().close()
        self.stdin = "closed"

    def open_stdin(self) -> asyncio.StreamWriter:
        if self.stdin is None or self.proc.stdin is None:
            raise AgentFailure(
                "stdin_not_open",
                f"Process {self.pid} was started without stdin; start it with "
                '"stdin": true to write to it.',
            )
        if self.stdin == "closed":
            raise AgentFailure("stdin_closed", f"The stdin of process {self.pid} is closed.")
        if self.exit_code is not None:
            raise _exited(self, "so its stdin takes nothing more")
        if self.proc.stdin.is_closing():  # it closed its end of the pipe itself
            raise AgentFailure(
                "stdin_closed", f"Process {self.pid} closed its stdin; it reads no more input."
            )
        return self.proc.stdin

    async def wait_change(self, timeout: float | None = None) -> None:
        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout)

    def forget(self, remove_logs: bool = False) -> None:
        for task in self.tasks:
            task.cancel()
        for stream in self.streams.values():
            stream.close(remove=remove_logs)


PROCESSES: dict[int, Process] = {}


def _prune() -> None:
    exited = [p for p in PROCESSES.values() if p.finished]
    for process in exited[: max(0, len(exited) - KEEP_EXITED)]:
        PROCESSES.pop(process.pid, None)
        process.forget(remove_logs=True)


def _lookup(pid: object) -> Process:
    process = PROCESSES.get(pid) if isinstance(pid, int) else None
    if process is None:
        raise AgentFailure("not_found", f"No process with pid {pid}.")
    return process


async def _until_client_gone(channel: Channel, work: Awaitable[T]) -> T | None:
    """Run ``work``; give it up if the client closes the connection meanwhile."""
    task = asyncio.ensure_future(work)
    gone = asyncio.create_task(_client_gone(channel))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        return None
    finally:
        task.cancel()
        gone.cancel()


async def _client_gone(channel: Channel) -> None:
    with contextlib.suppress(Exception):
        while await channel.receive() is not None:
            pass


# ------------------------------------------------------------------------ handlers


async def handle_start(request: ProcessStart, channel: Channel) -> None:
    procs.check_env(request.env)
    procs.check_sandbox_env(request.sandbox_env)
    if not isinstance(request.stdin, bool):
        raise AgentFailure("bad_request", "stdin must be true or false")
    argv = procs.argv_for(request.command)
    cwd = working_directory(resolve_path(request.cwd))
    if sum(1 for p in PROCESSES.values() if p.exit_code is None) >= MAX_RUNNING:
        raise AgentFailure("limit_reached", f"at most {MAX_RUNNING} processes may run at once")
    limit = min(request.log_buffer, MAX_BUFFER) if request.log_buffer > 0 else DEFAULT_BUFFER
    with contextlib.suppress(OSError):
        os.makedirs(LOG_DIR, mode=0o700, exist_ok=True)
    try:
        proc = await procs.spawn(
            argv,
            cwd,
            procs.child_env(request.env, request.sandbox_env),
            asyncio.subprocess.PIPE if request.stdin else asyncio.subprocess.DEVNULL,
        )
    except (FileNotFoundError, PermissionError) as exc:
        reason = "command not found" if isinstance(exc, FileNotFoundError) else "permission denied"
        raise AgentFailure("bad_request", f"{argv[0]}: {reason}") from None
    old = PROCESSES.pop(proc.pid, None)
    if old is not None:
        old.forget()
    process = PROCESSES[proc.pid] = Process(proc, request, cwd, limit)
    _prune()
    await channel.send_message(process.info())


async def handle_list(request: ProcessList, channel: Channel) -> None:
    processes = sorted(PROCESSES.values(), key=lambda p: (p.started_at, p.pid))
    await channel.send_message(ProcessListing(processes=[p.info().to_dict() for p in processes]))


async def handle_get(request: ProcessGet, channel: Channel) -> None:
    await channel.send_message(_lookup(request.pid).info())


async def handle_signal(request: ProcessSignal, channel: Channel) -> None:
    number = signal_number(request.signal or "")
    if number is None:
        raise AgentFailure("bad_request", f"unknown signal {request.signal!r}")
    process = _lookup(request.pid)
    if process.exit_code is None:
        procs.kill_group(process.pid, number)
    await channel.send_message(process.info())


async def handle_stdin(request: ProcessStdin, channel: Channel) -> None:
    """Check, then read the data to its end (at most STDIN_BUFFER) and write it whole."""
    process = _lookup(request.pid)
    if request.close:
        process.close_stdin()
        await channel.send_message(process.info())
        return
    process.open_stdin()
    await channel.send_message(process.info())
    data = bytearray()
    while True:
        frame = await channel.receive()
        if frame is None:
            return  # the client went away before the end: nothing is written
        kind, payload = frame
        if kind != Kind.DATA:
            raise AgentFailure("bad_request", "stdin data comes as DATA frames")
        if not payload:
            break
        if len(data) + len(payload) > STDIN_BUFFER:
            raise AgentFailure(
                "stdin_full", f"At most {STDIN_BUFFER} bytes of input may be sent at once."
            )
        data += payload
    if data:
        process.write_stdin(bytes(data))
    await channel.send_message(process.info())


async def handle_logs(request: ProcessLogs, channel: Channel) -> None:
    process = _lookup(request.pid)
    if not request.follow:
        for name, kind in (("stdout", Kind.STDOUT), ("stderr", Kind.STDERR)):
            await channel.send_data(kind, process.streams[name].tail())
        await channel.send_message(process.info())
        return
    await _until_client_gone(channel, _follow(process, channel))


async def _follow(process: Process, channel: Channel) -> None:
    """Send from the start of what is in memory, then everything new, then the info."""
    kinds = {"stdout": Kind.STDOUT, "stderr": Kind.STDERR}
    offsets = {name: stream.start for name, stream in process.streams.items()}
    while True:
        finished = process.finished  # read before the data: no output is missed
        sent = False
        for name, stream in process.streams.items():
            if offsets[name] < stream.end:
                offset, data = stream.read(offsets[name])
                if data:
                    await channel.send(kinds[name], data)
                    sent = True
                offsets[name] = offset + len(data)
        if sent:
            continue
        if finished:
            await channel.send_message(process.info())
            return
        await process.wait_change(1.0)


async def handle_wait_port(request: ProcessWaitPort, channel: Channel) -> None:
    port = request.port
    if not isinstance(port, int) or not 0 < port < 65536:
        raise AgentFailure("bad_request", "port must be 1-65535")
    process = _lookup(request.pid)

    async def wait() -> PortReady:
        deadline = time.monotonic() + max(0.0, float(request.timeout))
        while True:
            if port in listening_ports():
                return PortReady(port=port)
            if process.exit_code is not None:
                raise _exited(process, f"before anything listened on port {port}")
            if time.monotonic() >= deadline:
                raise AgentFailure(
                    "timeout",
                    f"Nothing listened on port {port} within {request.timeout:g}s "
                    f"(process {process.pid} is still running).",
                )
            await asyncio.sleep(_POLL)

    reply = await _until_client_gone(channel, wait())
    if reply is not None:
        await channel.send_message(reply)


def _exited(process: Process, what: str) -> AgentFailure:
    how = f"was killed by {process.signal}" if process.signal else f"exited {process.exit_code}"
    return AgentFailure("process_exited", f"Process {process.pid} {how} {what}.")


async def handle_wait_log(request: ProcessWaitLog, channel: Channel) -> None:
    try:
        pattern = re.compile(request.pattern)
    except (re.error, TypeError) as exc:
        raise AgentFailure(
            "bad_request", f"pattern is not a valid regular expression: {exc}"
        ) from None
    process = _lookup(request.pid)

    async def scan() -> LogMatch:
        offsets = {name: stream.start for name, stream in process.streams.items()}
        partial = {name: b"" for name in process.streams}
        deadline = time.monotonic() + max(0.0, float(request.timeout))
        while True:
            finished = process.finished
            progressed = False
            for name, stream in process.streams.items():
                while offsets[name] < stream.end:
                    offset, data = stream.read(offsets[name])
                    offsets[name] = offset + len(data)
                    if not data:
                        break
                    progressed = True
                    *lines, rest = (partial[name] + data).split(b"\n")
                    partial[name] = rest[-_MAX_LINE:]
                    for raw in lines:
                        if found := _search(pattern, raw, name):
                            return found
                # A line without its newline yet (a prompt, "Ready") counts too.
                if partial[name] and (found := _search(pattern, partial[name], name)):
                    return found
            if progressed:
                await asyncio.sleep(0)
                continue
            if finished:
                raise _exited(process, f"without printing a line matching {request.pattern!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentFailure(
                    "timeout",
                    f"No line matching {request.pattern!r} within {request.timeout:g}s "
                    f"(process {process.pid} is still running).",
                )
            await process.wait_change(min(left, 1.0))

    reply = await _until_client_gone(channel, scan())
    if reply is not None:
        await channel.send_message(reply)


def _search(pattern: re.Pattern[str], raw: bytes, stream: str) -> LogMatch | None:
    line = raw.decode(errors="replace").rstrip("\r")
    found = pattern.search(line)
    if found is None:
        return None
    return LogMatch(match=found.group(0), line=line, stream=stream)


HANDLERS = table(
    on(ProcessStart, handle_start),
    on(ProcessList, handle_list),
    on(ProcessGet, handle_get),
    on(ProcessSignal, handle_signal),
    on(ProcessStdin, handle_stdin),
    on(ProcessLogs, handle_logs),
    on(ProcessWaitPort, handle_wait_port),
    on(ProcessWaitLog, handle_wait_log),
)
