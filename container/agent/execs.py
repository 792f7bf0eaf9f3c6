"""One-shot commands: spawn, stream stdout/stderr with backpressure, report the exit.

Each command runs in its own session (process group) so a timeout, a signal or the
client going away reaches everything it started, not just the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Coroutine
from typing import Any

from .protocol import (
    CHUNK,
    Channel,
    Error,
    Exec,
    Exit,
    Kind,
    Message,
    Signal,
    Started,
    decode_message,
)

# Overridable so the agent can run outside a container in unit tests.
WORKSPACE = os.environ.get("SANDBOX_AGENT_WORKSPACE", "/workspace")
# The agent's own settings never leak into the programs it runs.
_PRIVATE_ENV = ("SANDBOX_AGENT_", "PYTHONPATH")
# After the command exits, output still in flight is sent; a pipe that stays silent
# this long (held open by a background child) is abandoned.
_DRAIN_IDLE = 0.1


def resolve_path(path: str | None, default: str = WORKSPACE) -> str:
    if not path:
        return default
    return os.path.normpath(os.path.join(WORKSPACE, path))


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV)}
    env.update(extra)
    return env


def validate_env(env: object) -> str | None:
    if not isinstance(env, dict):
        return "env must be an object of strings"
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return "env must be an object of strings"
        if not key or "=" in key or "\0" in key or "\0" in value:
            return f"invalid environment variable name {key!r}"
    return None


def signal_number(name: str) -> int | None:
    name = name.upper().removeprefix("SIG")
    try:
        return int(getattr(signal, "SIG" + name))
    except AttributeError:
        return None


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def kill_group_fully(pgid: int, within: float = 3.0) -> None:
    """SIGKILL a process group until it is empty: a fork bomb forks while it dies,
    so one signal can leave children that were being born."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        await asyncio.sleep(0.01)


PROCESS_LIMIT_MESSAGE = (
    "The sandbox cannot start another process: it has reached its process limit "
    "(SANDBOX_PIDS_LIMIT). Stop some of its processes, or restart the sandbox "
    '(POST /sleep {"tier": "stop"}; the next call starts it again).'
)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves ``exited`` when the process ends, not when its pipes close.

    asyncio's own ``wait()`` also waits for every pipe to close, so a command that
    leaves a background child holding stdout open would never seem to end.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=CHUNK, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class Child(asyncio.subprocess.Process):
    _protocol: _Protocol

    async def exited(self) -> int:
        await asyncio.shield(self._protocol.exited)
        code = self._transport.get_returncode()
        return -1 if code is None else code


async def spawn(argv: list[str], cwd: str, env: dict[str, str], stdin: int) -> Child:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop),
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    return Child(transport, protocol, loop)


def argv_for(command: str | list[str]) -> list[str] | str:
    """The argv to run, or an error sentence."""
    if isinstance(command, str):
        if not command.strip():
            return "command is empty"
        return ["bash", "-lc", command]
    if (
        isinstance(command, list)
        and command
        and all(isinstance(a, str) and "\0" not in a for a in command)
    ):
        return command
    return "command must be a non-empty string or a list of strings"


async def handle_exec(request: Message, channel: Channel) -> None:
    if not isinstance(request, Exec):
        raise TypeError(request)
    if request.session is not None:
        from . import sessions  # sessions build on this module

        await sessions.handle_exec(request, channel)
        return
    argv = argv_for(request.command)
    env_error = validate_env(request.env)
    if isinstance(argv, str) or env_error:
        await channel.send_message(Error(code="bad_request", message=str(env_error or argv)))
        return
    cwd = resolve_path(request.cwd)
    if not os.path.isdir(cwd):
        await channel.send_message(
            Error(code="not_found", message=f"working directory {cwd} does not exist")
        )
        return
    use_stdin = request.stdin_stream or request.stdin is not None
    started = time.monotonic()
    try:
        proc = await spawn(
            argv,
            cwd,
            child_env(request.env),
            asyncio.subprocess.PIPE if use_stdin else asyncio.subprocess.DEVNULL,
        )
    except BlockingIOError:
        await channel.send_message(Error(code="limit_reached", message=PROCESS_LIMIT_MESSAGE))
        return
    except (FileNotFoundError, PermissionError) as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        reason = "command not found" if code == 127 else "permission denied"
        await channel.send_message(Started(pid=0))
        await channel.send(Kind.STDERR, f"{argv[0]}: {reason}\n".encode())
        await channel.send_message(Exit(exit_code=code, duration_ms=_ms(started)))
        return
    await channel.send_message(Started(pid=proc.pid))
    await run_to_exit(proc, channel, request, started)


async def run_to_exit(proc: Child, channel: Channel, request: Exec, started: float) -> None:
    sent = [0]

    async def pump(stream: asyncio.StreamReader | None, kind: int) -> None:
        if stream is None:
            return
        while chunk := await stream.read(CHUNK):
            await channel.send(kind, chunk)
            sent[0] += len(chunk)

    pumps = [
        asyncio.create_task(pump(proc.stdout, Kind.STDOUT)),
        asyncio.create_task(pump(proc.stderr, Kind.STDERR)),
    ]
    stdin_task = asyncio.create_task(_feed_stdin(proc, request))
    control = asyncio.create_task(_follow_client(proc, channel))
    timed_out = False
    ended = False
    try:
        try:
            code = await asyncio.wait_for(proc.exited(), request.timeout)
        except TimeoutError:
            timed_out = True
            await kill_group_fully(proc.pid)
            code = await proc.exited()
        await _drain(pumps, sent)
        ended = True
    finally:
        for task in (*pumps, stdin_task, control):
            task.cancel()
        # A command is a foreground job: what it left in its process group ends with
        # it (a fork bomb included). Long-lived programs belong to the processes API,
        # or leave the group on purpose (`setsid -f server`) - which takes a moment
        # after the command returns, hence the grace before the clean-up.
        if ended and _group_alive(proc.pid):
            _in_background(_end_group_later(proc.pid))
        else:
            await kill_group_fully(proc.pid)
    if control.done() and not control.cancelled() and control.result() == "gone":
        return
    sig_name = None
    if code < 0:
        sig_name = signal.Signals(-code).name
        code = 128 - code
    await channel.send_message(
        Exit(
            exit_code=None if timed_out else code,
            timed_out=timed_out,
            duration_ms=_ms(started),
            signal=None if timed_out else sig_name,
        )
    )


LEFTOVER_GRACE = 0.5
_background: set[asyncio.Task[None]] = set()


def _in_background(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _end_group_later(pgid: int) -> None:
    await asyncio.sleep(LEFTOVER_GRACE)
    await kill_group_fully(pgid, within=10.0)


async def _drain(pumps: list[asyncio.Task[None]], sent: list[int]) -> None:
    while True:
        before = sent[0]
        _done, pending = await asyncio.wait(pumps, timeout=_DRAIN_IDLE)
        if not pending:
            for task in pumps:
                task.result()  # surface a broken connection
            return
        if sent[0] == before:
            return


async def _feed_stdin(proc: asyncio.subprocess.Process, request: Exec) -> None:
    if request.stdin is None or proc.stdin is None:
        return
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        proc.stdin.write(request.stdin.encode())
        await proc.stdin.drain()
        proc.stdin.close()


async def _follow_client(proc: asyncio.subprocess.Process, channel: Channel) -> str:
    """Relay stdin frames and signals; kill the command if the client goes away."""
    while True:
        try:
            frame = await channel.receive()
        except Exception:
            frame = None
        if frame is None:
            await kill_group_fully(proc.pid)
            return "gone"
        kind, payload = frame
        if kind == Kind.STDIN and proc.stdin is not None:
            if not payload:
                proc.stdin.close()
                continue
            try:
                proc.stdin.write(payload)
                await proc.stdin.drain()
            except (ConnectionError, BrokenPipeError):
                pass
        elif kind == Kind.CONTROL:
            message = decode_message(payload)
            if isinstance(message, Signal):
                number = signal_number(message.signal)
                if number is not None:
                    kill_group(proc.pid, number)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


HANDLERS = {Exec: handle_exec}
