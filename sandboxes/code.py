"""The code interpreter (docs/api.md, Code interpreter): contexts and runs.

Contexts live in the sandbox's agent (container/agent/kernels.py): Python contexts
are Jupyter kernels, JavaScript contexts Node.js REPLs. This module speaks to the
agent through ``agentconn.open_agent`` / ``call_agent`` (so every call wakes a
sleeping sandbox) and turns the agent's frames into run events or a collected result.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings

from container.agent.protocol import (
    MAX_FRAME,
    CodeContextCreate,
    CodeContextDelete,
    CodeContextInfo,
    CodeContextList,
    CodeContexts,
    CodeResult,
    CodeRun,
    CodeRunEnd,
    CodeRunError,
    CodeRunStarted,
    Error,
    Kind,
    ProtocolError,
    encode_message,
)
from sandboxes import agentconn, buffers, execs, lifecycle
from sandboxes.agent.client import decode_control, expect, nested, receive_frame, receive_message
from sandboxes.errors import AgentProtocolError, BadRequest, PayloadTooLarge, from_agent
from sandboxes.models import Sandbox

LANGUAGES = ("python", "javascript")


def _context_dict(info: CodeContextInfo | dict[str, Any]) -> dict[str, Any]:
    """A context as the API shows it; a listed one is checked as a CodeContextInfo."""
    if not isinstance(info, CodeContextInfo):
        info = nested(info, CodeContextInfo, "a listed code context")
    data = info.to_dict()
    data.pop("type", None)
    return data


async def create_context(
    sandbox: Sandbox, language: str, cwd: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    # a created context's kernel starts now: it gets the egress proxy, as programs do
    context_env = {**lifecycle.proxy_env(sandbox), **(env or {})}
    reply = await agentconn.call_agent(
        sandbox, CodeContextCreate(language=language, cwd=cwd, env=context_env)
    )
    return _context_dict(expect(reply, CodeContextInfo))


async def list_contexts(sandbox: Sandbox) -> list[dict[str, Any]]:
    reply = expect(await agentconn.call_agent(sandbox, CodeContextList()), CodeContexts)
    return [_context_dict(c) for c in reply.contexts]


async def delete_context(sandbox: Sandbox, context_id: str) -> None:
    expect(await agentconn.call_agent(sandbox, CodeContextDelete(id=context_id)), CodeContextInfo)


# ------------------------------------------------------------------------ runs


@dataclass
class RunRequest:
    code: str
    language: str | None = None
    context: str | None = None
    timeout: float | None = None

    def to_message(self) -> CodeRun:
        return CodeRun(
            code=self.code, language=self.language, context=self.context, timeout=self.timeout
        )


@dataclass(frozen=True)
class RunEvent:
    """``started``, ``stdout``/``stderr`` (text), ``result`` (a MIME bundle with
    ``is_main_result``), ``error`` ({name, value, traceback}) or ``end``."""

    kind: Literal["started", "stdout", "stderr", "result", "error", "end"]
    data: Any = None
    size: int = 0  # bytes of the agent's message (for a result: what keeping it costs)


async def run_stream(sandbox: Sandbox, request: RunRequest) -> AsyncGenerator[RunEvent, None]:
    """Run code; the first event is ``started`` (bad requests raise before it)."""
    if request.timeout is not None and request.timeout > settings.EXEC_MAX_TIMEOUT:
        raise BadRequest(
            f"timeout may be at most {settings.EXEC_MAX_TIMEOUT:g} seconds.", code="invalid_timeout"
        )
    run = request.to_message()
    if len(request.code) > MAX_FRAME // 8:
        try:
            encode_message(run)
        except ProtocolError:
            raise PayloadTooLarge(
                f"The code is too large: at most {MAX_FRAME // 1024 // 1024} MB once "
                "JSON-encoded. Write it to a file and run that instead."
            ) from None
    channel = await agentconn.open_agent(sandbox, run)
    try:
        first = expect(await receive_message(channel), CodeRunStarted)
        yield RunEvent("started", {"context": first.context, "language": first.language})
        decoders = {Kind.STDOUT: execs.TextStream(), Kind.STDERR: execs.TextStream()}
        names = {Kind.STDOUT: "stdout", Kind.STDERR: "stderr"}
        while True:
            kind, payload = await receive_frame(channel)
            if kind in decoders:
                if not payload:
                    raise AgentProtocolError("it sent an empty frame of a run's output.")
                text = decoders[kind].feed(payload)
                if text:
                    yield RunEvent(names[kind], text, len(payload))  # type: ignore[arg-type]
                continue
            if kind != Kind.CONTROL:
                raise AgentProtocolError(f"it sent a frame of kind {kind} in a code run.")
            message = decode_control(payload)
            for stream_kind, decoder in decoders.items():
                if tail := decoder.flush():
                    yield RunEvent(names[stream_kind], tail)  # type: ignore[arg-type]
            if isinstance(message, CodeResult):
                data = {**message.data, "is_main_result": message.is_main_result}
                yield RunEvent("result", data, len(payload))
            elif isinstance(message, CodeRunError):
                yield RunEvent(
                    "error",
                    {"name": message.name, "value": message.value, "traceback": message.traceback},
                )
            elif isinstance(message, CodeRunEnd):
                yield RunEvent(
                    "end",
                    {
                        "execution_count": message.execution_count,
                        "duration_ms": message.duration_ms,
                    },
                )
                return
            elif isinstance(message, Error):
                raise from_agent(message.code, message.message)
            else:
                raise AgentProtocolError(f"it sent {message.type!r} in a code run.")
    finally:
        await channel.close()


@dataclass
class RunResult:
    context: str = ""
    language: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    error: dict[str, str] | None = None
    execution_count: int | None = None
    duration_ms: float = 0.0
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "results": self.results,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error": self.error,
            "context": self.context,
            "language": self.language,
            "execution_count": self.execution_count,
            "duration_ms": self.duration_ms,
        }
        if self.truncated:
            data["truncated"] = True
        return data


async def collect(events: AsyncIterator[RunEvent], owner: int = 0) -> RunResult:
    """A run's events gathered into one result. stdout, stderr and the results (MIME
    bundles) are each capped at EXEC_OUTPUT_LIMIT, and all of them at ``owner``'s and
    the server's output budgets (``sandboxes.buffers``); beyond, ``truncated``."""
    limit = settings.EXEC_OUTPUT_LIMIT
    result = RunResult()
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
    sizes = {"stdout": 0, "stderr": 0, "result": 0}
    started = time.monotonic()
    with buffers.Held(owner) as held:
        async for event in events:
            if event.kind in streams:
                keep = held.take(min(len(event.data), limit - sizes[event.kind]))
                if keep < len(event.data):
                    result.truncated = True
                if keep:
                    streams[event.kind].append(event.data[:keep])
                    sizes[event.kind] += keep
            elif event.kind == "result":
                fits = sizes["result"] + event.size <= limit
                if fits and held.take_all(event.size):
                    result.results.append(event.data)
                    sizes["result"] += event.size
                else:
                    result.truncated = True
            else:
                _gather(result, event)
        result.stdout = "".join(streams["stdout"])
        result.stderr = "".join(streams["stderr"])
    result.duration_ms = result.duration_ms or round((time.monotonic() - started) * 1000, 3)
    return result


def _gather(result: RunResult, event: RunEvent) -> None:
    """A run's ``started``, ``error`` or ``end`` event, into ``result``."""
    if event.kind == "error":
        result.error = event.data
    elif event.kind == "started":
        result.context = event.data["context"]
        result.language = event.data["language"]
    elif event.kind == "end":
        result.execution_count = event.data["execution_count"]
        result.duration_ms = event.data["duration_ms"]
