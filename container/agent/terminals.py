"""Named PTY terminals: shells that outlive their clients.

A terminal is a ``bash -l`` on a pseudo-terminal, owned by the agent and named by
the client (terminado's named terminals). Connections attach to it and detach from
it; the shell keeps running with nobody attached until it exits, is killed, or has
had no client for ``idle_timeout`` seconds.

Output flow (ttyd's and code-server's lesson, terminado's missing piece):

    PTY master --read--> Terminal --> its screen (screens.py: parsed when quiet)
                                  \\--> one bounded queue per attached client
                                        --> its connection (drained writes)

* The reader never waits for a client: a client whose queue is full has output
  skipped and is told so (``TerminalLagged``) when it catches up.
* When *every* attached client is full the reader stops reading the PTY; the kernel
  buffer fills and the program writing (``yes``) blocks. That is the backpressure
  that keeps memory flat; it resumes as soon as one client drains.
* With no client attached the PTY is read freely into the replay buffer only, so
  programs keep running while nobody watches.

A client that attaches first gets the terminal's screen as it is (scrollback, the
screen, the alternate screen of a full-screen program, modes and cursor), written
out by screens.serialize: never the raw output again, whose queries (device
attributes, cursor reports …) the client's emulator would answer into the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import struct
import termios
import time
from collections import deque
from datetime import UTC, datetime

from . import procs
from .dispatch import on, table
from .failures import AgentFailure
from .paths import resolve_path, working_directory
from .protocol import (
    CHUNK,
    Channel,
    Exit,
    Kind,
    TerminalAttach,
    TerminalAttached,
    TerminalKill,
    TerminalKilled,
    TerminalLagged,
    TerminalList,
    TerminalListing,
    TerminalResize,
    decode_message,
)
from .screens import ScreenKeeper

log = logging.getLogger("sandbox_agent.terminals")


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


NAME_RE = re.compile(r"[a-z0-9-]{1,40}\Z")
# The most output parsed at once into a terminal's screen (the screen a client gets
# when it attaches); a longer burst is rebuilt from its end. 0: no screen kept.
REPLAY_LIMIT = int(_env_number("SANDBOX_AGENT_TERMINAL_REPLAY", 64 * 1024))
# Lines of scrollback kept with the screen.
SCROLLBACK = int(_env_number("SANDBOX_AGENT_TERMINAL_SCROLLBACK", 1000))
# Bytes queued for one client before it counts as slow.
CLIENT_QUEUE_LIMIT = int(_env_number("SANDBOX_AGENT_TERMINAL_CLIENT_QUEUE", 256 * 1024))
# Seconds a terminal lives with no client attached (0 or less: for ever).
IDLE_TIMEOUT = _env_number("SANDBOX_AGENT_TERMINAL_IDLE_TIMEOUT", 24 * 3600.0)
MAX_TERMINALS = int(_env_number("SANDBOX_AGENT_MAX_TERMINALS", 64))
MAX_COLS, MAX_ROWS = 1000, 500
SHELL = ["bash", "-l"]
# After the shell exits, output still in the PTY is read until EOF or this long idle
# (a background job may hold the terminal open).
_EXIT_DRAIN = 0.2
# terminado's polite terminate: each signal, then this long to see the shell go.
_TERMINATE_SIGNALS = (signal.SIGHUP, signal.SIGCONT, signal.SIGINT, signal.SIGTERM)
_TERMINATE_DELAY = 0.1


class _Exited:
    """Queue item: the shell ended with this exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


class Client:
    """One attached connection: a bounded queue drained by its own writer."""

    def __init__(self, terminal: Terminal, readonly: bool, limit: int = CLIENT_QUEUE_LIMIT) -> None:
        self.terminal = terminal
        self.readonly = readonly
        self.limit = limit
        # bytes (output), int (bytes skipped while lagging) or _Exited (the end)
        self.items: deque[bytes | int | _Exited] = deque()
        self.queued = 0
        self.skipped_total = 0
        self._wakeup = asyncio.Event()

    @property
    def full(self) -> bool:
        return self.queued >= self.limit

    def offer(self, data: bytes) -> None:
        if self.full:
            self.skipped_total += len(data)
            if self.items and isinstance(self.items[-1], int):
                self.items[-1] += len(data)
            else:
                self.items.append(len(data))
        else:
            self.items.append(data)
            self.queued += len(data)
        self._wakeup.set()

    def put_first(self, data: bytes) -> None:
        if data:
            self.items.appendleft(data)
            self.queued += len(data)
            self._wakeup.set()

    def end(self, code: int) -> None:
        self.items.append(_Exited(code))
        self._wakeup.set()

    async def pump(self, channel: Channel) -> None:
        """Send queued output until the terminal ends (or the connection breaks)."""
        while True:
            while not self.items:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self.items.popleft()
            if isinstance(item, bytes):
                self.queued -= len(item)
                self.terminal.client_drained()
                await channel.send_data(Kind.DATA, item)
            elif isinstance(item, int):
                await channel.send_message(TerminalLagged(skipped=item))
            else:
                await channel.send_message(Exit(exit_code=item.code))
                return


class _ShellProtocol(asyncio.SubprocessProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class Terminal:
    def __init__(
        self, name: str, cols: int, rows: int, idle_timeout: float, replay_limit: int
    ) -> None:
        self.name = name
        self.cols = cols
        self.rows = rows
        self.idle_timeout = idle_timeout
        self.created_at = datetime.now(UTC)
        self.screen = ScreenKeeper(cols, rows, replay_limit, SCROLLBACK)
        self.clients: set[Client] = set()
        self.pid = 0
        self.exit_code: int | None = None
        self.ended = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._reading = False
        self._eof = asyncio.Event()
        self._bytes_read = 0
        self._transport: asyncio.SubprocessTransport | None = None
        self._protocol: _ShellProtocol | None = None
        self._write_lock = asyncio.Lock()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._terminating: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def spawn(
        self, cwd: str, env: dict[str, str], sandbox_env: dict[str, str] | None = None
    ) -> None:
        master, slave = os.openpty()
        try:
            _set_size(master, self.cols, self.rows)
            os.set_blocking(master, False)
            env = procs.child_env(
                {"TERM": "xterm-256color", "COLORTERM": "truecolor", **env}, sandbox_env
            )
            setsid = shutil.which("setsid")
            # The shell must lead a new session with the PTY as its controlling
            # terminal (job control, Ctrl-C). util-linux's `setsid --ctty` does the
            # setsid() + TIOCSCTTY and execs bash in place, with no preexec_fn.
            argv = [setsid, "--ctty", *SHELL] if setsid else SHELL
            kwargs = {} if setsid else {"preexec_fn": _become_session_leader}
            transport, protocol = await self._loop.subprocess_exec(
                lambda: _ShellProtocol(self._loop),
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                **kwargs,  # type: ignore[arg-type]
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._fd = master
        self._transport = transport
        self._protocol = protocol
        self.pid = transport.get_pid()
        self._start_reading()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        if self._protocol is None or self._transport is None:
            return
        await self._protocol.exited
        # Output the shell wrote just before exiting is still in the PTY: read it
        # while it keeps coming (bounded; a background job may hold the PTY open).
        deadline = time.monotonic() + 10 * _EXIT_DRAIN
        while not self._eof.is_set() and time.monotonic() < deadline:
            before = self._bytes_read
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof.wait(), _EXIT_DRAIN)
            if self._bytes_read == before:
                break
        code = self._transport.get_returncode()
        self._finish(procs.exit_status(-1 if code is None else code)[0])

    def _finish(self, code: int) -> None:
        if self.ended.is_set():
            return
        self.exit_code = code
        self._stop_reading()
        if self._idle_timer:
            self._idle_timer.cancel()
        self.screen.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)  # hangs up whatever still holds the terminal
        if self._transport:
            self._transport.close()
        if TERMINALS.get(self.name) is self:
            del TERMINALS[self.name]
        for client in self.clients:
            client.end(code)
        self.ended.set()

    async def terminate(self) -> int | None:
        """terminado's polite terminate: HUP, CONT, INT, TERM, then KILL."""
        if self._terminating is None:
            self._terminating = asyncio.create_task(self._terminate())
        await asyncio.shield(self._terminating)
        return self.exit_code

    async def _terminate(self) -> None:
        for sig in (*_TERMINATE_SIGNALS, signal.SIGKILL):
            if self.ended.is_set():
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), _TERMINATE_DELAY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), 5)
        if not self.ended.is_set():  # pragma: no cover - SIGKILL always ends it
            self._finish(137)

    # ------------------------------------------------------------------ clients

    def attach(self, readonly: bool, cols: int, rows: int) -> Client:
        """Register a client; its queue starts with the screen (no await: no gap).

        A read-only client (a watcher) changes nothing about the terminal: not its
        size, and not its idle countdown, which only writing clients stop and start.
        A writer's size applies first, so the screen it gets is drawn at its size.
        """
        client = Client(self, readonly)
        if not readonly:
            if self._idle_timer:
                self._idle_timer.cancel()
                self._idle_timer = None
            self.resize(cols, rows)
        client.put_first(self.screen.snapshot())
        self.clients.add(client)
        return client

    def detach(self, client: Client) -> None:
        self.clients.discard(client)
        if self.ended.is_set():
            return
        self.client_drained()  # a slow client leaving may unblock the others
        if not client.readonly and not self._writers() and self.idle_timeout > 0:
            self._idle_timer = self._loop.call_later(self.idle_timeout, self._idle)

    def _writers(self) -> bool:
        return any(not c.readonly for c in self.clients)

    def _idle(self) -> None:
        if not self._writers():
            log.info("terminal %s: idle for %gs, ending it", self.name, self.idle_timeout)
            self._terminating = asyncio.create_task(self._terminate())

    def client_drained(self) -> None:
        if not self._reading and not self.ended.is_set() and not self._all_full():
            self._start_reading()

    def _all_full(self) -> bool:
        return bool(self.clients) and all(c.full for c in self.clients)

    # ------------------------------------------------------------------ PTY I/O

    def _start_reading(self) -> None:
        if not self._reading and not self._eof.is_set():
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        data = bytearray()
        eof = False
        try:
            while len(data) < CHUNK:
                chunk = os.read(self._fd, CHUNK - len(data))
                if not chunk:
                    eof = True
                    break
                data += chunk
        except BlockingIOError:
            pass
        except OSError:  # EIO: every holder of the terminal's other side is gone
            eof = True
        if data:
            self._publish(bytes(data))
        if eof:
            self._stop_reading()
            self._eof.set()

    def _publish(self, data: bytes) -> None:
        self._bytes_read += len(data)
        self.screen.append(data)
        for client in self.clients:
            client.offer(data)
        if self._all_full():
            self._stop_reading()  # every client is behind: let the PTY fill up

    async def write(self, data: bytes) -> None:
        """Type into the terminal, waiting while its input buffer is full."""
        async with self._write_lock:
            view = memoryview(data)
            while view and not self.ended.is_set():
                try:
                    view = view[os.write(self._fd, view) :]
                except BlockingIOError:
                    await self._writable()
                except OSError:
                    return

    async def _writable(self) -> None:
        ready = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(self._fd, wake)
        try:  # re-checked at least every second in case the shell ended meanwhile
            await asyncio.wait_for(ready, 1)
        except TimeoutError:
            pass
        finally:
            self._loop.remove_writer(self._fd)

    def resize(self, cols: int, rows: int) -> None:
        if not _valid_size(cols, rows) or self.ended.is_set():
            return
        if (cols, rows) != (self.cols, self.rows):
            self.cols, self.rows = cols, rows
            self.screen.resize(cols, rows)
            with contextlib.suppress(OSError):
                _set_size(self._fd, cols, rows)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "cols": self.cols,
            "rows": self.rows,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "clients": len(self.clients),
            "pid": self.pid,
        }


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _valid_size(cols: object, rows: object) -> bool:
    return (
        isinstance(cols, int)
        and isinstance(rows, int)
        and not isinstance(cols, bool)
        and not isinstance(rows, bool)
        and 1 <= cols <= MAX_COLS
        and 1 <= rows <= MAX_ROWS
    )


def _become_session_leader() -> None:  # pragma: no cover - only without util-linux
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# ---------------------------------------------------------------------- registry

TERMINALS: dict[str, Terminal] = {}
_create_lock = asyncio.Lock()


def _check_attach(request: TerminalAttach) -> None:
    def bad(message: str) -> AgentFailure:
        return AgentFailure("bad_request", message)

    if not isinstance(request.name, str) or not NAME_RE.match(request.name):
        raise bad("terminal name must be 1-40 characters of a-z, 0-9 and '-'")
    if not _valid_size(request.cols, request.rows):
        raise bad(f"cols must be 1-{MAX_COLS} and rows 1-{MAX_ROWS}")
    if request.idle_timeout is not None and not isinstance(request.idle_timeout, int | float):
        raise bad("idle_timeout must be a number of seconds")
    if request.replay_limit is not None and (
        not isinstance(request.replay_limit, int) or request.replay_limit < 0
    ):
        raise bad("replay_limit must be a number of bytes")
    if request.cwd is not None and not isinstance(request.cwd, str):
        raise bad("cwd must be a string")
    procs.check_env(request.env)
    procs.check_sandbox_env(request.sandbox_env)


async def _get_or_create(request: TerminalAttach) -> tuple[Terminal, bool]:
    async with _create_lock:
        terminal = TERMINALS.get(request.name)
        if terminal is not None and not terminal.ended.is_set():
            # A watcher's attach changes nothing about the terminal it watches.
            if request.idle_timeout is not None and not request.readonly:
                terminal.idle_timeout = float(request.idle_timeout)
            return terminal, False
        if request.readonly:  # a watcher joins a shell; it does not start one
            raise AgentFailure("not_found", f"no terminal named {request.name!r} to watch")
        limit = request.max_terminals or MAX_TERMINALS
        if len(TERMINALS) >= limit:
            raise AgentFailure(
                "limit_reached",
                f"this sandbox already has {limit} terminals "
                "(TERMINAL_MAX_PER_SANDBOX); delete one first",
            )
        cwd = working_directory(resolve_path(request.cwd))
        terminal = Terminal(
            request.name,
            request.cols,
            request.rows,
            IDLE_TIMEOUT if request.idle_timeout is None else float(request.idle_timeout),
            REPLAY_LIMIT if request.replay_limit is None else request.replay_limit,
        )
        await terminal.spawn(cwd, request.env, request.sandbox_env)
        TERMINALS[request.name] = terminal
        return terminal, True


async def handle_attach(request: TerminalAttach, channel: Channel) -> None:
    _check_attach(request)
    terminal, created = await _get_or_create(request)
    client = terminal.attach(request.readonly, request.cols, request.rows)
    try:
        await channel.send_message(
            TerminalAttached(
                name=terminal.name,
                cols=terminal.cols,
                rows=terminal.rows,
                pid=terminal.pid,
                created=created,
            )
        )
        tasks = {
            asyncio.create_task(client.pump(channel)),
            asyncio.create_task(_follow_client(terminal, client, channel)),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        terminal.detach(client)


async def _follow_client(terminal: Terminal, client: Client, channel: Channel) -> None:
    """Keystrokes and resizes from one client, until it goes away."""
    while True:
        frame = await channel.receive()
        if frame is None:
            return
        kind, payload = frame
        if client.readonly:
            continue
        if kind == Kind.STDIN and payload:
            await terminal.write(payload)
        elif kind == Kind.CONTROL:
            message = decode_message(payload)
            if isinstance(message, TerminalResize):
                terminal.resize(message.cols, message.rows)


async def handle_list(request: TerminalList, channel: Channel) -> None:
    terminals = sorted(TERMINALS.values(), key=lambda t: t.created_at)
    await channel.send_message(TerminalListing(terminals=[t.describe() for t in terminals]))


async def handle_kill(request: TerminalKill, channel: Channel) -> None:
    terminal = TERMINALS.get(request.name) if isinstance(request.name, str) else None
    if terminal is None:
        raise AgentFailure("not_found", f"no terminal named {request.name!r}")
    started = time.monotonic()
    code = await terminal.terminate()
    log.info("terminal %s: ended in %.0f ms", terminal.name, (time.monotonic() - started) * 1000)
    await channel.send_message(TerminalKilled(name=terminal.name, exit_code=code))


HANDLERS = table(
    on(TerminalAttach, handle_attach),
    on(TerminalList, handle_list),
    on(TerminalKill, handle_kill),
)
