"""API v1: the code interpreter (docs/api.md, Code interpreter), JSON or SSE."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from django.http import HttpResponse, StreamingHttpResponse
from ninja import Router, Schema
from pydantic import Field, StringConstraints, field_validator

from sandboxes import code, lifecycle

from . import sse
from .auth import AuthedRequest
from .sandboxes import ERRORS
from .schemas import EnvMap, ErrorOut, StrictIn, check_env

router = Router(tags=["code"])

Language = Literal["python", "javascript"]
ContextId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CODE_ERRORS = {**ERRORS, 409: ErrorOut, 502: ErrorOut}


class ContextIn(StrictIn):
    language: Language = "python"
    cwd: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    env: EnvMap | None = None

    _env = field_validator("env")(check_env)


class ContextOut(Schema):
    id: str
    language: str
    cwd: str
    status: str = ""
    created_at: str = ""


class ContextList(Schema):
    contexts: list[ContextOut]


class RunIn(StrictIn):
    code: Annotated[str, StringConstraints(max_length=4 * 1024 * 1024)]
    language: Language | None = None
    context: ContextId | None = None
    timeout: Annotated[float, Field(gt=0)] | None = None

    @field_validator("code")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("code must not contain NUL bytes")
        return value


class RunError(Schema):
    name: str
    value: str
    traceback: str


class RunOut(Schema):
    results: list[dict[str, Any]]
    stdout: str
    stderr: str
    error: RunError | None
    context: str
    language: str
    execution_count: int | None = None
    duration_ms: float
    truncated: bool = False


@router.post("/sandboxes/{sandbox_id}/code/contexts", response={201: ContextOut, **CODE_ERRORS})
async def create_context(
    request: AuthedRequest, sandbox_id: str, payload: ContextIn
) -> tuple[int, dict[str, Any]]:
    """Start a persistent interpreter: a Jupyter kernel (python) or a Node.js REPL."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    context = await code.create_context(sandbox, payload.language, payload.cwd, payload.env)
    return 201, context


@router.get("/sandboxes/{sandbox_id}/code/contexts", response={200: ContextList, **CODE_ERRORS})
async def list_contexts(request: AuthedRequest, sandbox_id: str) -> dict[str, Any]:
    """The sandbox's contexts, the default ones included once they were used."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    return {"contexts": await code.list_contexts(sandbox)}


@router.delete(
    "/sandboxes/{sandbox_id}/code/contexts/{context_id}", response={204: None, **CODE_ERRORS}
)
async def delete_context(request: AuthedRequest, sandbox_id: str, context_id: str) -> HttpResponse:
    """Stop the context's interpreter and forget it (its state is lost)."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    await code.delete_context(sandbox, context_id)
    return HttpResponse(status=204)


@router.post(
    "/sandboxes/{sandbox_id}/code/run",
    response={200: RunOut, **CODE_ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "The result, or with `Accept: text/event-stream` a stream of "
                "`stdout`/`stderr` ({data}), `result` (a MIME bundle), `error` and one `end`.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def run_code(
    request: AuthedRequest, sandbox_id: str, payload: RunIn
) -> dict[str, Any] | StreamingHttpResponse:
    """Run code in a context (or the language's default one); state persists."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    run_request = code.RunRequest(
        code=payload.code,
        language=payload.language,
        context=payload.context,
        timeout=payload.timeout,
    )
    events = code.run_stream(sandbox, run_request)
    first = await anext(events)  # a bad request is a plain JSON error, streaming or not
    if sse.wants_stream(request.headers.get("Accept", "")):
        return sse.response(_sse_events(events))
    return (await code.collect(_chain(first, events), sandbox.owner_id)).as_dict()


async def _chain(
    first: code.RunEvent, events: AsyncIterator[code.RunEvent]
) -> AsyncIterator[code.RunEvent]:
    yield first
    async for event in events:
        yield event


async def _sse_events(events: AsyncGenerator[code.RunEvent, None]) -> AsyncIterator[bytes]:
    """The events after ``started`` (which only told that the request was good)."""
    try:
        async for event in events:
            if event.kind in ("stdout", "stderr"):
                yield sse.event(event.kind, {"data": event.data})
            else:
                yield sse.event(event.kind, event.data)
    finally:
        await events.aclose()
