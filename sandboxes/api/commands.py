"""API v1: commands (docs/api.md, Commands), as JSON or Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from django.http import StreamingHttpResponse
from ninja import Router

from sandboxes.agent.client import ExecEvent
from sandboxes.execs import (
    ExecRequest,
    Text,
    exec_collect,
    exec_stream,
    prepend,
    text_events,
)
from sandboxes.lifecycle import get_sandbox

from . import sse
from .auth import AuthedRequest
from .sandboxes import ERRORS
from .schemas import ExecIn, ExecOut
from .serialize import exec_result_out, exit_out

router = Router(tags=["commands"])


@router.post(
    "/sandboxes/{sandbox_id}/exec",
    response={200: ExecOut, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "The result, or with `Accept: text/event-stream` a stream "
                "of `stdout`/`stderr` events and one `exit` event.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def exec_command(
    request: AuthedRequest, sandbox_id: str, payload: ExecIn
) -> dict[str, object] | StreamingHttpResponse:
    """Run a command: a string under `bash -lc`, a list as argv."""
    sandbox = await get_sandbox(request.auth, sandbox_id)
    exec_request = ExecRequest(
        command=payload.command,
        cwd=payload.cwd,
        env=payload.env or {},
        timeout=payload.timeout,
        stdin=payload.stdin,
        session=payload.session,
    )
    if sse.wants_stream(request.headers.get("Accept", "")):
        events = exec_stream(sandbox, exec_request)
        first = await anext(events)  # errors before any output are plain JSON errors
        return sse.response(_exec_events(first, events))
    return exec_result_out(await exec_collect(sandbox, exec_request))


async def _exec_events(
    first: ExecEvent, events: AsyncGenerator[ExecEvent, None]
) -> AsyncIterator[bytes]:
    async for item in text_events(prepend(first, events)):
        if isinstance(item, Text):
            yield sse.event(item.stream, {"data": item.text})
        elif item.exit is not None:
            yield sse.event("exit", exit_out(item.exit))
