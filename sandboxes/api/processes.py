"""API v1: background processes (docs/api.md, Background processes) and shell
sessions (``POST /sessions``, then ``exec`` with ``session``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from django.http import StreamingHttpResponse
from ninja import Router, Schema
from pydantic import Field, StringConstraints, field_validator

from container.agent.protocol import signal_number
from sandboxes import processes
from sandboxes.errors import BadRequest
from sandboxes.execs import Text, prepend, text_events
from sandboxes.lifecycle import get_sandbox

from . import sse
from .auth import AuthedRequest
from .sandboxes import ERRORS
from .schemas import Command, EnvMap, ErrorOut, StrictIn, check_env
from .serialize import process_exit_out

router = Router(tags=["processes"])

WAIT_ERRORS = {**ERRORS, 408: ErrorOut, 409: ErrorOut}
STDIN_ERRORS = {**ERRORS, 409: ErrorOut, 413: ErrorOut, 429: ErrorOut}
SESSION_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CwdStr = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class ProcessIn(StrictIn):
    command: Command
    cwd: CwdStr | None = None
    env: EnvMap | None = None
    # Give it a stdin that POST …/stdin writes to (otherwise it reads end-of-file).
    stdin: bool = False

    _env = field_validator("env")(check_env)


class ProcessOut(Schema):
    pid: int
    command: str | list[str]
    status: str
    exit_code: int | None
    started_at: str
    cwd: str = ""
    signal: str | None = None
    exited_at: str | None = None
    stdin: Literal["open", "closed"] | None = None


class ProcessListOut(Schema):
    processes: list[ProcessOut]


class LogsOut(Schema):
    stdout: str
    stderr: str


class WaitPortIn(StrictIn):
    port: Annotated[int, Field(ge=1, le=65535)]
    timeout: Annotated[float, Field(gt=0)] = 30.0


class WaitLogIn(StrictIn):
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    timeout: Annotated[float, Field(gt=0)] = 30.0


class PortOut(Schema):
    port: int


class MatchOut(Schema):
    match: str
    line: str
    stream: str


class SessionIn(StrictIn):
    id: Annotated[str, StringConstraints(pattern=SESSION_ID)] | None = None
    cwd: CwdStr | None = None
    env: EnvMap | None = None

    _env = field_validator("env")(check_env)


class SessionOut(Schema):
    id: str
    cwd: str
    env: EnvMap
    created_at: str


class SessionListOut(Schema):
    sessions: list[SessionOut]


# ------------------------------------------------------------------------ processes


@router.post("/sandboxes/{sandbox_id}/processes", response={201: ProcessOut, **ERRORS})
async def start_process(
    request: AuthedRequest, sandbox_id: str, payload: ProcessIn
) -> tuple[int, dict[str, Any]]:
    """Start a background process: a string under `bash -lc`, a list as argv."""
    sandbox = await get_sandbox(request.auth, sandbox_id)
    process = await processes.start_process(
        sandbox, payload.command, payload.cwd, payload.env or {}, stdin=payload.stdin
    )
    return 201, process


@router.get("/sandboxes/{sandbox_id}/processes", response={200: ProcessListOut, **ERRORS})
async def list_processes(request: AuthedRequest, sandbox_id: str) -> dict[str, Any]:
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return {"processes": await processes.list_processes(sandbox)}


@router.get("/sandboxes/{sandbox_id}/processes/{pid}", response={200: ProcessOut, **ERRORS})
async def get_process(request: AuthedRequest, sandbox_id: str, pid: int) -> dict[str, Any]:
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return await processes.get_process(sandbox, pid)


@router.get(
    "/sandboxes/{sandbox_id}/processes/{pid}/logs",
    response={200: LogsOut, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "`{stdout, stderr}` kept so far (the tail of each stream); "
                "with `?follow=1` or `Accept: text/event-stream` a stream of `stdout`/"
                "`stderr` events as the process writes, then one `exit` event.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def process_logs(
    request: AuthedRequest, sandbox_id: str, pid: int, follow: bool = False
) -> dict[str, Any] | StreamingHttpResponse:
    sandbox = await get_sandbox(request.auth, sandbox_id)
    if follow or sse.wants_stream(request.headers.get("Accept", "")):
        events = processes.follow_logs(sandbox, pid, follow=follow)
        first = await anext(events)  # an unknown pid is a plain JSON 404
        return sse.response(_log_events(first, events))
    logs = await processes.logs_so_far(sandbox, pid)
    return {"stdout": logs["stdout"], "stderr": logs["stderr"]}


async def _log_events(
    first: processes.LogEvent, events: AsyncGenerator[processes.LogEvent, None]
) -> AsyncIterator[bytes]:
    async for item in text_events(prepend(first, events)):
        if isinstance(item, Text):
            yield sse.event(item.stream, {"data": item.text})
        elif item.process is not None:
            yield sse.event("exit", process_exit_out(item.process))


@router.delete("/sandboxes/{sandbox_id}/processes/{pid}", response={204: None, **ERRORS})
async def signal_process(
    request: AuthedRequest, sandbox_id: str, pid: int, signal: str = "TERM"
) -> tuple[int, None]:
    """Send a signal (TERM by default; KILL, INT, HUP, ...) to the process's group."""
    if not signal.isalnum() or signal_number(signal) is None:
        raise BadRequest(
            f"Unknown signal {signal!r}: use a name such as TERM, KILL, INT or HUP.",
            code="invalid_signal",
        )
    sandbox = await get_sandbox(request.auth, sandbox_id)
    await processes.signal_process(sandbox, pid, signal)
    return 204, None


@router.post(
    "/sandboxes/{sandbox_id}/processes/{pid}/stdin",
    response={200: ProcessOut, **STDIN_ERRORS},
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "Raw bytes, appended to the process's stdin as they are.",
        }
    },
)
async def write_stdin(request: AuthedRequest, sandbox_id: str, pid: int) -> dict[str, Any]:
    """Append the raw body to the stdin of a process started with `"stdin": true`
    (409 otherwise or once closed; 429 `stdin_full` while it leaves too much unread)."""
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return await processes.send_stdin(sandbox, pid, request.body)


@router.post(
    "/sandboxes/{sandbox_id}/processes/{pid}/stdin/close",
    response={200: ProcessOut, **STDIN_ERRORS},
)
async def close_stdin(request: AuthedRequest, sandbox_id: str, pid: int) -> dict[str, Any]:
    """End the process's input: it reads end-of-file after what was written."""
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return await processes.close_stdin(sandbox, pid)


@router.post(
    "/sandboxes/{sandbox_id}/processes/{pid}/wait-for-port",
    response={200: PortOut, **WAIT_ERRORS},
)
async def wait_for_port(
    request: AuthedRequest, sandbox_id: str, pid: int, payload: WaitPortIn
) -> dict[str, Any]:
    """Wait until something in the sandbox listens on `port` (408 `timeout`, 409
    `process_exited` if the process ends first)."""
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return await processes.wait_for_port(sandbox, pid, payload.port, payload.timeout)


@router.post(
    "/sandboxes/{sandbox_id}/processes/{pid}/wait-for-log",
    response={200: MatchOut, **WAIT_ERRORS},
)
async def wait_for_log(
    request: AuthedRequest, sandbox_id: str, pid: int, payload: WaitLogIn
) -> dict[str, Any]:
    """Wait for a line of output (so far or to come) matching the regex `pattern`."""
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return await processes.wait_for_log(sandbox, pid, payload.pattern, payload.timeout)


# ------------------------------------------------------------------------ sessions


@router.post(
    "/sandboxes/{sandbox_id}/sessions", response={201: SessionOut, **ERRORS, 409: ErrorOut}
)
async def create_session(
    request: AuthedRequest, sandbox_id: str, payload: SessionIn | None = None
) -> tuple[int, dict[str, Any]]:
    """A shell session: execs that name it share its cwd and environment (`cd` and
    `export` carry over)."""
    payload = payload or SessionIn()
    sandbox = await get_sandbox(request.auth, sandbox_id)
    session = await processes.create_session(sandbox, payload.id, payload.cwd, payload.env or {})
    return 201, session


@router.get("/sandboxes/{sandbox_id}/sessions", response={200: SessionListOut, **ERRORS})
async def list_sessions(request: AuthedRequest, sandbox_id: str) -> dict[str, Any]:
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return {"sessions": await processes.list_sessions(sandbox)}


@router.get("/sandboxes/{sandbox_id}/sessions/{session_id}", response={200: SessionOut, **ERRORS})
async def get_session(request: AuthedRequest, sandbox_id: str, session_id: str) -> dict[str, Any]:
    sandbox = await get_sandbox(request.auth, sandbox_id)
    return await processes.get_session(sandbox, session_id)


@router.delete("/sandboxes/{sandbox_id}/sessions/{session_id}", response={204: None, **ERRORS})
async def delete_session(
    request: AuthedRequest, sandbox_id: str, session_id: str
) -> tuple[int, None]:
    sandbox = await get_sandbox(request.auth, sandbox_id)
    await processes.delete_session(sandbox, session_id)
    return 204, None
