"""Server-Sent Events: the one encoder every streaming endpoint uses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

from sandboxes.errors import SandboxError


def event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


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
