"""Background processes and shell sessions of a sandbox.

Both live in the sandbox's agent, not here: a process outlives the request that
started it, every client that follows its logs, and this web worker. This module
turns API calls into agent requests and agent answers into plain data, checked:
listed processes and sessions must have their fields' types, and "logs so far"
hold at most PROCESS_LOG_BUFFER of each stream (what the agent was asked to keep).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from container.agent.protocol import (
    CHUNK,
    Error,
    Kind,
    LogMatch,
    Message,
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
    SessionCreate,
    SessionDelete,
    SessionGet,
    SessionInfo,
    SessionList,
    SessionListing,
)
from sandboxes import agentconn, lifecycle
from sandboxes.agent.client import decode_control, nested, receive_frame, receive_message
from sandboxes.errors import AgentProtocolError, BadRequest, from_agent
from sandboxes.models import Sandbox


def process_out(info: ProcessInfo | dict[str, Any]) -> dict[str, Any]:
    """A process as the API shows it; a listed one is checked as a ProcessInfo."""
    if not isinstance(info, ProcessInfo):
        info = nested(info, ProcessInfo, "a listed process")
    data = info.to_dict()
    data.pop("type", None)
    return data


def _expect(reply: Message, cls: type[Message]) -> Any:
    if not isinstance(reply, cls):
        raise AgentProtocolError(f"it answered {reply.type!r} where {cls.type!r} was due.")
    return reply


def _check_timeout(timeout: float) -> None:
    if not 0 < timeout <= settings.EXEC_MAX_TIMEOUT:
        raise BadRequest(
            f"timeout must be more than 0 and at most {settings.EXEC_MAX_TIMEOUT:g} seconds.",
            code="invalid_timeout",
        )


# ------------------------------------------------------------------------ processes


async def start_process(
    sandbox: Sandbox,
    command: str | list[str],
    cwd: str | None,
    env: dict[str, str],
    stdin: bool = False,
) -> dict[str, Any]:
    request = ProcessStart(
        command=command,
        cwd=cwd,
        env=env,
        log_buffer=settings.PROCESS_LOG_BUFFER,
        stdin=stdin,
        sandbox_env=lifecycle.program_env(sandbox),
    )
    return process_out(_expect(await agentconn.call_agent(sandbox, request), ProcessInfo))


async def send_stdin(sandbox: Sandbox, pid: int, data: bytes) -> dict[str, Any]:
    """Append ``data`` to the stdin of a process started with ``stdin`` (the agent
    takes it whole or refuses it: 409 when its stdin is not open, 429 when the
    process has left too much unread)."""
    channel = await agentconn.open_agent(sandbox, ProcessStdin(pid=pid))
    try:
        _expect(await receive_message(channel), ProcessInfo)  # it can take input
        # If the agent breaks off while reading, its answer says why.
        with contextlib.suppress(ConnectionError, OSError):
            for start in range(0, len(data), CHUNK):
                await channel.send(Kind.DATA, data[start : start + CHUNK])
            await channel.send(Kind.DATA, b"")
        reply = await receive_message(channel)
    finally:
        await channel.close()
    return process_out(_expect(reply, ProcessInfo))


async def close_stdin(sandbox: Sandbox, pid: int) -> dict[str, Any]:
    """End the process's input: it reads end-of-file once it has read what was sent."""
    reply = await agentconn.call_agent(sandbox, ProcessStdin(pid=pid, close=True))
    return process_out(_expect(reply, ProcessInfo))


async def list_processes(sandbox: Sandbox) -> list[dict[str, Any]]:
    reply = _expect(await agentconn.call_agent(sandbox, ProcessList()), ProcessListing)
    return [process_out(p) for p in reply.processes]


async def get_process(sandbox: Sandbox, pid: int) -> dict[str, Any]:
    return process_out(
        _expect(await agentconn.call_agent(sandbox, ProcessGet(pid=pid)), ProcessInfo)
    )


async def signal_process(sandbox: Sandbox, pid: int, signal: str) -> dict[str, Any]:
    reply = await agentconn.call_agent(sandbox, ProcessSignal(pid=pid, signal=signal))
    return process_out(_expect(reply, ProcessInfo))


async def logs_so_far(sandbox: Sandbox, pid: int) -> dict[str, Any]:
    """The output the agent keeps in memory (the tail of each stream) and the process.

    The agent keeps at most PROCESS_LOG_BUFFER of each stream (the process was started
    asking for that), so an agent that sends more is refused, not buffered.
    """
    limit = max(settings.PROCESS_LOG_BUFFER, 1024 * 1024)  # the agent's default: 1 MiB
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    info = None
    async for event in follow_logs(sandbox, pid, follow=False):
        if event.kind in buffers:
            if len(buffers[event.kind]) + len(event.data) > limit:
                raise AgentProtocolError(
                    f"it sent more than the {limit} bytes of {event.kind} a process keeps."
                )
            buffers[event.kind] += event.data
        else:
            info = event.process
    return {
        "stdout": buffers["stdout"].decode(errors="replace"),
        "stderr": buffers["stderr"].decode(errors="replace"),
        "process": info,
    }


@dataclass(frozen=True)
class LogEvent:
    kind: str  # stdout | stderr | exit
    data: bytes = b""
    process: dict[str, Any] | None = None


async def follow_logs(
    sandbox: Sandbox, pid: int, follow: bool = True
) -> AsyncGenerator[LogEvent, None]:
    """The process's output kept so far, then (``follow``) as it is written; last an
    ``exit`` event with the process. Each chunk is read from the agent only when the
    consumer asks for it: a slow client slows only its own stream. Output frames are
    never empty (an agent cannot spin a call with frames that carry nothing)."""
    channel = await agentconn.open_agent(sandbox, ProcessLogs(pid=pid, follow=follow))
    try:
        while True:
            kind, payload = await receive_frame(channel)
            if kind in (Kind.STDOUT, Kind.STDERR):
                if not payload:
                    raise AgentProtocolError("it sent an empty frame of a process's output.")
                yield LogEvent("stdout" if kind == Kind.STDOUT else "stderr", payload)
            elif kind == Kind.CONTROL:
                message = decode_control(payload)
                if isinstance(message, Error):
                    raise from_agent(message.code, message.message)
                yield LogEvent("exit", process=process_out(_expect(message, ProcessInfo)))
                return
            else:
                raise AgentProtocolError(f"it sent a frame of kind {kind} in a process's logs.")
    finally:
        await channel.close()


async def wait_for_port(sandbox: Sandbox, pid: int, port: int, timeout: float) -> dict[str, Any]:
    _check_timeout(timeout)
    request = ProcessWaitPort(pid=pid, port=port, timeout=timeout)
    reply = _expect(await agentconn.call_agent(sandbox, request), PortReady)
    return {"port": reply.port}


async def wait_for_log(sandbox: Sandbox, pid: int, pattern: str, timeout: float) -> dict[str, Any]:
    _check_timeout(timeout)
    request = ProcessWaitLog(pid=pid, pattern=pattern, timeout=timeout)
    reply = _expect(await agentconn.call_agent(sandbox, request), LogMatch)
    return {"match": reply.match, "line": reply.line, "stream": reply.stream}


# ------------------------------------------------------------------------ sessions


def session_out(info: SessionInfo | dict[str, Any]) -> dict[str, Any]:
    """A session as the API shows it; a listed one is checked as a SessionInfo."""
    if not isinstance(info, SessionInfo):
        info = nested(info, SessionInfo, "a listed session")
    data = info.to_dict()
    data.pop("type", None)
    return data


async def create_session(
    sandbox: Sandbox, session_id: str | None, cwd: str | None, env: dict[str, str]
) -> dict[str, Any]:
    request = SessionCreate(
        id=session_id, cwd=cwd, env=env, sandbox_env=lifecycle.program_env(sandbox)
    )
    return session_out(_expect(await agentconn.call_agent(sandbox, request), SessionInfo))


async def list_sessions(sandbox: Sandbox) -> list[dict[str, Any]]:
    reply = _expect(await agentconn.call_agent(sandbox, SessionList()), SessionListing)
    return [session_out(s) for s in reply.sessions]


async def get_session(sandbox: Sandbox, session_id: str) -> dict[str, Any]:
    reply = await agentconn.call_agent(sandbox, SessionGet(id=session_id))
    return session_out(_expect(reply, SessionInfo))


async def delete_session(sandbox: Sandbox, session_id: str) -> dict[str, Any]:
    reply = await agentconn.call_agent(sandbox, SessionDelete(id=session_id))
    return session_out(_expect(reply, SessionInfo))
