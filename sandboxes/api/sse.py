"""Server-Sent Events: the one encoder every streaming endpoint uses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse

from sandboxes.errors import SandboxError
from sandboxes.progress import Done, Step

T = TypeVar("T")


def event(name: str, data: Any) -> bytes:
    """One event; dates and times as in JSON answers (ISO 8601)."""
    text = json.dumps(data, separators=(",", ":"), cls=DjangoJSONEncoder)
    return f"event: {name}\ndata: {text}\n\n".encode()


def wants_stream(accept: str) -> bool:
    return "text/event-stream" in accept


async def _guard(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Errors after the headers are sent become an ``error`` event, not a cut stream."""
    try:
        async for chunk in events:
            yield chunk
    except SandboxError as exc:
        yield event("error", {"code": exc.code, "message": exc.message})


def response(events: AsyncIterator[bytes]) -> StreamingHttpResponse:
    resp = StreamingHttpResponse(_guard(events), content_type="text/event-stream")
    resp["Cache-Control"] = "no-cache"
    resp["X-Accel-Buffering"] = "no"
    return resp


async def progress(
    steps: AsyncIterator[Step | Done[T]], shape: Callable[[T], Any]
) -> AsyncIterator[bytes]:
    """A long operation (``sandboxes.progress.follow``) as ``progress`` events, then
    one ``done`` event holding what the plain JSON answer would hold."""
    async for item in steps:
        if isinstance(item, Done):
            yield event("done", shape(item.result))
        else:
            yield event("progress", item.to_dict())
