"""One-shot commands (``Exec``): spawn, stream stdout/stderr with backpressure, report
the exit.

A command is a foreground job in its own process group (see ``procs``): a timeout, a
signal or the client going away reaches everything it started. A command that names
a session starts in that session's state and leaves the state it ends in to it
(``sessions`` keeps the state; this module runs the command).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

from . import procs, sessions
from .dispatch import on, table
from .paths import resolve_path, working_directory
from .protocol import (
    CHUNK,
    Channel,
    Exec,
    Exit,
    Kind,
    Signal,
    Started,
    decode_message,
    signal_number,
)

# After the command exits, output still in flight is sent; a pipe that stays silent
# this long (held open by a background child) is abandoned.
_DRAIN_IDLE = 0.1


async def handle_exec(request: Exec, channel: Channel) -> None:
    if request.session is not None:
        run = sessions.prepare_run(request)
        try:
            await _run(run.argv, run.cwd, run.env, request, channel)
        finally:
            run.finish()
        return
    procs.check_env(request.env)
    procs.check_sandbox_env(request.sandbox_env)
    argv = procs.argv_for(request.command)
    cwd = working_directory(resolve_path(request.cwd))
    await _run(argv, cwd, procs.child_env(request.env, request.sandbox_env), request, channel)


async def _run(
    argv: list[str], cwd: str, env: dict[str, str], request: Exec, channel: Channel
) -> None:
    """Start the command and stream it to its end. A program that cannot be started
    ends like a shell's would: 127 (not found) or 126 (not executable)."""
    use_stdin = request.stdin_stream or request.stdin is not None
    started = time.monotonic()
    try:
        proc = await procs.spawn(
            argv, cwd, env, asyncio.subprocess.PIPE if use_stdin else asyncio.subprocess.DEVNULL
        )
    except (FileNotFoundError, PermissionError) as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        reason = "command not found" if code == 127 else "permission denied"
        await channel.send_message(Started(pid=0))
        await channel.send(Kind.STDERR, f"{argv[0]}: {reason}\n".encode())
        await channel.send_message(Exit(exit_code=code, duration_ms=_ms(started)))
        return
    await channel.send_message(Started(pid=proc.pid))
    await _run_to_exit(proc, channel, request, started)


async def _run_to_exit(proc: procs.Child, channel: Channel, request: Exec, started: float) -> None:
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
            await procs.kill_group_fully(proc.pid)
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
        if ended and procs.group_alive(proc.pid):
            _in_background(_end_group_later(proc.pid))
        else:
            await procs.kill_group_fully(proc.pid)
    if control.done() and not control.cancelled() and control.result() == "gone":
        return
    code, sig_name = procs.exit_status(code)
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


async def _end_group_later(pgid: int) -> None:
    await asyncio.sleep(LEFTOVER_GRACE)
    await procs.kill_group_fully(pgid, within=10.0)


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
            await procs.kill_group_fully(proc.pid)
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
                    procs.kill_group(proc.pid, number)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


HANDLERS = table(on(Exec, handle_exec))
