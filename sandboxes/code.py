"""The code interpreter (API.md section Code interpreter): contexts and runs.

Contexts live in the sandbox's agent (container/agent/kernels.py): Python contexts
are Jupyter kernels, JavaScript contexts Node.js REPLs. This module speaks to the
agent through ``services.open_agent`` / ``call_agent`` (so every call wakes a
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
    decode_message,
    encode_message,
)
from sandboxes import services
from sandboxes.agent.client import receive_frame, receive_message
from sandboxes.errors import AgentError, BadRequest, PayloadTooLarge, from_agent
from sandboxes.models import Sandbox

LANGUAGES = ("python", "javascript")


def _context_dict(info: CodeContextInfo | dict[str, Any]) -> dict[str, Any]:
    data = info.to_dict() if isinstance(info, CodeContextInfo) else dict(info)
    data.pop("type", None)
    return data


async def create_context(
    sandbox: Sandbox, language: str, cwd: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    reply = await services.call_agent(
        sandbox, CodeContextCreate(language=language, cwd=cwd, env=env or {})
    )
    if not isinstance(reply, CodeContextInfo):
        raise AgentError(f"unexpected answer to a context creation: {reply.type}")
    return _context_dict(reply)


async def list_contexts(sandbox: Sandbox) -> list[dict[str, Any]]:
    reply = await services.call_agent(sandbox, CodeContextList())
    if not isinstance(reply, CodeContexts):
        raise AgentError(f"unexpected answer to a context listing: {reply.type}")
    return [_context_dict(c) for c in reply.contexts]


async def delete_context(sandbox: Sandbox, context_id: str) -> None:
    reply = await services.call_agent(sandbox, CodeContextDelete(id=context_id))
    if not isinstance(reply, CodeContextInfo):
        raise AgentError(f"unexpected answer to a context deletion: {reply.type}")


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


async def run_stream(sandbox: Sandbox, request: RunRequest) -> AsyncGenerator[RunEvent, None]:
    """Run code; the first event is ``started`` (bad requests raise before it)."""
    if request.timeout is not None and request.timeout > settings.EXEC_MAX_TIMEOUT:
        raise BadRequest(
            f"timeout may be at most {settings.EXEC_MAX_TIMEOUT:g} seconds.", code="invalid_timeout"
        )
    message = request.to_message()
    if len(request.code) > MAX_FRAME // 8:
        try:
            encode_message(message)
        except ProtocolError:
            raise PayloadTooLarge(
                f"The code is too large: at most {MAX_FRAME // 1024 // 1024} MB once "
                "JSON-encoded. Write it to a file and run that instead."
            ) from None
    channel = await services.open_agent(sandbox, message)
    try:
        first = await receive_message(channel)
        if not isinstance(first, CodeRunStarted):
            raise AgentError(f"unexpected answer to a code run: {first.type}")
        yield RunEvent("started", {"context": first.context, "language": first.language})
        decoders = {Kind.STDOUT: services.TextStream(), Kind.STDERR: services.TextStream()}
        names = {Kind.STDOUT: "stdout", Kind.STDERR: "stderr"}
        while True:
            kind, payload = await receive_frame(channel)
            if kind in decoders:
                text = decoders[kind].feed(payload)
                if text:
                    yield RunEvent(names[kind], text)  # type: ignore[arg-type]
                continue
            if kind != Kind.CONTROL:
                continue
            try:
                message = decode_message(payload)
            except ProtocolError as exc:
                raise AgentError(str(exc)) from exc
            for stream_kind, decoder in decoders.items():
                if tail := decoder.flush():
                    yield RunEvent(names[stream_kind], tail)  # type: ignore[arg-type]
            if isinstance(message, CodeResult):
                yield RunEvent("result", {**message.data, "is_main_result": message.is_main_result})
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


async def collect(events: AsyncIterator[RunEvent]) -> RunResult:
    """A run's events gathered into one result (stdout/stderr capped at EXEC_OUTPUT_LIMIT)."""
    limit = settings.EXEC_OUTPUT_LIMIT
    result = RunResult()
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
    sizes = {"stdout": 0, "stderr": 0}
    started = time.monotonic()
    async for event in events:
        if event.kind in streams:
            room = limit - sizes[event.kind]
            text = event.data if len(event.data) <= room else event.data[: max(room, 0)]
            if len(text) < len(event.data):
                result.truncated = True
            if text:
                streams[event.kind].append(text)
                sizes[event.kind] += len(text)
        elif event.kind == "result":
            result.results.append(event.data)
        elif event.kind == "error":
            result.error = event.data
        elif event.kind == "started":
            result.context = event.data["context"]
            result.language = event.data["language"]
        elif event.kind == "end":
            result.execution_count = event.data["execution_count"]
            result.duration_ms = event.data["duration_ms"]
    result.stdout = "".join(streams["stdout"])
    result.stderr = "".join(streams["stderr"])
    result.duration_ms = result.duration_ms or round((time.monotonic() - started) * 1000, 3)
    return result
