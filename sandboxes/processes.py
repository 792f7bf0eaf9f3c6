"""Background processes and shell sessions of a sandbox (issue 3).

Both live in the sandbox's agent, not here: a process outlives the request that
started it, every client that follows its logs, and this web worker. This module
turns API calls into agent requests and agent answers into plain data.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from container.agent.protocol import (
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
    ProcessWaitLog,
    ProcessWaitPort,
    SessionCreate,
    SessionDelete,
    SessionGet,
    SessionInfo,
    SessionList,
    SessionListing,
    decode_message,
)
from sandboxes import services
from sandboxes.agent.client import receive_frame
from sandboxes.errors import AgentError, BadRequest, from_agent
from sandboxes.models import Sandbox


def process_out(info: ProcessInfo | dict[str, Any]) -> dict[str, Any]:
    data = info.to_dict() if isinstance(info, ProcessInfo) else dict(info)
    data.pop("type", None)
    return data


def _expect(reply: Message, cls: type[Message]) -> Any:
    if not isinstance(reply, cls):
        raise AgentError(f"The sandbox's agent answered {reply.type!r} instead of {cls.type!r}.")
    return reply


def _check_timeout(timeout: float) -> None:
    if not 0 < timeout <= settings.EXEC_MAX_TIMEOUT:
        raise BadRequest(
            f"timeout must be more than 0 and at most {settings.EXEC_MAX_TIMEOUT:g} seconds.",
            code="invalid_timeout",
        )


# ------------------------------------------------------------------------ processes


async def start_process(
    sandbox: Sandbox, command: str | list[str], cwd: str | None, env: dict[str, str]
) -> dict[str, Any]:
    request = ProcessStart(
        command=command, cwd=cwd, env=env, log_buffer=settings.PROCESS_LOG_BUFFER
    )
    return process_out(_expect(await services.call_agent(sandbox, request), ProcessInfo))


async def list_processes(sandbox: Sandbox) -> list[dict[str, Any]]:
    reply = _expect(await services.call_agent(sandbox, ProcessList()), ProcessListing)
    return [process_out(p) for p in reply.processes]


async def get_process(sandbox: Sandbox, pid: int) -> dict[str, Any]:
    return process_out(
        _expect(await services.call_agent(sandbox, ProcessGet(pid=pid)), ProcessInfo)
    )


async def signal_process(sandbox: Sandbox, pid: int, signal: str) -> dict[str, Any]:
    reply = await services.call_agent(sandbox, ProcessSignal(pid=pid, signal=signal))
    return process_out(_expect(reply, ProcessInfo))


async def logs_so_far(sandbox: Sandbox, pid: int) -> dict[str, Any]:
    """The output the agent keeps in memory (the tail of each stream) and the process."""
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    info = None
    async for event in follow_logs(sandbox, pid, follow=False):
        if event.kind in buffers:
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
    consumer asks for it: a slow client slows only its own stream."""
    channel = await services.open_agent(sandbox, ProcessLogs(pid=pid, follow=follow))
    try:
        while True:
            kind, payload = await receive_frame(channel)
            if kind == Kind.STDOUT:
                yield LogEvent("stdout", payload)
            elif kind == Kind.STDERR:
                yield LogEvent("stderr", payload)
            elif kind == Kind.CONTROL:
                message = decode_message(payload)
                if message.type == "error":
                    raise from_agent(getattr(message, "code", ""), getattr(message, "message", ""))
                yield LogEvent("exit", process=process_out(_expect(message, ProcessInfo)))
                return
    finally:
        await channel.close()


async def wait_for_port(sandbox: Sandbox, pid: int, port: int, timeout: float) -> dict[str, Any]:
    _check_timeout(timeout)
    request = ProcessWaitPort(pid=pid, port=port, timeout=timeout)
    reply = _expect(await services.call_agent(sandbox, request), PortReady)
    return {"port": reply.port}


async def wait_for_log(sandbox: Sandbox, pid: int, pattern: str, timeout: float) -> dict[str, Any]:
    _check_timeout(timeout)
    request = ProcessWaitLog(pid=pid, pattern=pattern, timeout=timeout)
    reply = _expect(await services.call_agent(sandbox, request), LogMatch)
    return {"match": reply.match, "line": reply.line, "stream": reply.stream}


# ------------------------------------------------------------------------ sessions


def session_out(info: SessionInfo | dict[str, Any]) -> dict[str, Any]:
    data = info.to_dict() if isinstance(info, SessionInfo) else dict(info)
    data.pop("type", None)
    return data


async def create_session(
    sandbox: Sandbox, session_id: str | None, cwd: str | None, env: dict[str, str]
) -> dict[str, Any]:
    request = SessionCreate(id=session_id, cwd=cwd, env=env)
    return session_out(_expect(await services.call_agent(sandbox, request), SessionInfo))


async def list_sessions(sandbox: Sandbox) -> list[dict[str, Any]]:
    reply = _expect(await services.call_agent(sandbox, SessionList()), SessionListing)
    return [session_out(s) for s in reply.sessions]


async def get_session(sandbox: Sandbox, session_id: str) -> dict[str, Any]:
    reply = await services.call_agent(sandbox, SessionGet(id=session_id))
    return session_out(_expect(reply, SessionInfo))


async def delete_session(sandbox: Sandbox, session_id: str) -> dict[str, Any]:
    reply = await services.call_agent(sandbox, SessionDelete(id=session_id))
    return session_out(_expect(reply, SessionInfo))
