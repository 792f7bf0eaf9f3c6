"""API v1: commands (docs/api.md, Commands), as JSON or Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse
from ninja import Router

from sandboxes import services

from . import sse
from .auth import AuthedRequest
from .sandboxes import ERRORS
from .schemas import ExecIn, ExecOut

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
    sandbox = await services.get_sandbox(request.auth, sandbox_id)
    exec_request = services.ExecRequest(
        command=payload.command,
        cwd=payload.cwd,
        env=payload.env or {},
        timeout=payload.timeout,
        stdin=payload.stdin,
        session=payload.session,
    )
    if sse.wants_stream(request.headers.get("Accept", "")):
        events = services.exec_stream(sandbox, exec_request)
        first = await anext(events)  # errors before any output are plain JSON errors
        return sse.response(_exec_events(first, events))
    result = await services.exec_collect(sandbox, exec_request)
    return result.as_dict()


async def _exec_events(
    first: services.ExecEvent, events: AsyncIterator[services.ExecEvent]
) -> AsyncIterator[bytes]:
    decoders = {"stdout": services.TextStream(), "stderr": services.TextStream()}

    async def all_events() -> AsyncIterator[services.ExecEvent]:
        yield first
        async for event in events:
            yield event

    try:
        async for event in all_events():
            if event.kind in decoders:
                text = decoders[event.kind].feed(event.data)
                if text:
                    yield sse.event(event.kind, {"data": text})
            elif event.kind == "exit" and event.exit is not None:
                for name, decoder in decoders.items():
                    if tail := decoder.flush():
                        yield sse.event(name, {"data": tail})
                code = event.exit.exit_code
                yield sse.event(
                    "exit",
                    {
                        "exit_code": code,
                        "success": code == 0 and not event.exit.timed_out,
                        "timed_out": event.exit.timed_out,
                        "duration_ms": event.exit.duration_ms,
                    },
                )
    finally:
        await events.aclose()
