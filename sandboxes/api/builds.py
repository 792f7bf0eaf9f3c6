"""API v1: template image builds (docs/api.md, Template images).

A build is a job: starting one answers 202 at once, ``GET /builds/{id}`` says how
it stands and ``GET /builds/{id}/logs`` streams its log (SSE) from the start. Only
who may use the template sees its builds; anyone else gets 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from django.http import StreamingHttpResponse
from ninja import Router, Schema

from sandboxes.models import TemplateBuild
from sandboxes.templates import builds
from sandboxes.templates import service as templates

from . import sse
from .auth import AuthedRequest
from .schemas import ErrorOut

router = Router(tags=["templates"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut, 503: ErrorOut}


class BuildOut(Schema):
    id: str
    template: str
    status: str
    image: str
    reused: bool
    step: int
    steps: int
    step_text: str
    error: str
    failed_step: str
    last_lines: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BuildList(Schema):
    builds: list[BuildOut]


def build_out(build: TemplateBuild) -> dict[str, Any]:
    return {
        "id": build.id,
        "template": build.template_id,
        "status": build.status,
        "image": build.image,
        "reused": build.reused,
        "step": build.step,
        "steps": build.steps,
        "step_text": build.step_text,
        "error": build.error,
        "failed_step": build.failed_step,
        "last_lines": build.last_lines,
        "created_at": build.created_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
    }


@router.post("/templates/{template_id}/build", response={202: BuildOut, **ERRORS})
async def start_build(request: AuthedRequest, template_id: str) -> tuple[int, dict[str, Any]]:
    """Build the template's Dockerfile (a refused one: 400 naming the line). The
    answer comes at once; follow the build at ``/builds/{id}``."""
    template = await templates.get_template(request.auth, template_id)
    return 202, build_out(await builds.start(template))


@router.get("/templates/{template_id}/builds", response={200: BuildList, **ERRORS})
async def list_builds(request: AuthedRequest, template_id: str) -> dict[str, Any]:
    """The template's latest builds, newest first."""
    template = await templates.get_template(request.auth, template_id)
    return {"builds": [build_out(b) for b in await builds.recent(template)]}


@router.get("/builds/{build_id}", response={200: BuildOut, **ERRORS})
async def get_build(request: AuthedRequest, build_id: str) -> dict[str, Any]:
    return build_out(await builds.get_build(request.auth, build_id))


@router.get(
    "/builds/{build_id}/logs",
    response={200: None, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "Server-Sent Events: `log` events (`{text}`: whole lines, "
                "from the start of the build), `progress` events (`{step, steps, "
                "message}`) when a new step begins, and one `done` event holding the "
                "build as `GET /builds/{id}` answers it.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def build_logs(request: AuthedRequest, build_id: str) -> StreamingHttpResponse:
    build = await builds.get_build(request.auth, build_id)
    return sse.response(_events(build.id))


async def _events(build_id: str) -> AsyncIterator[bytes]:
    async for kind, value in builds.follow(build_id):
        if kind == "log":
            yield sse.event("log", {"text": value})
        elif kind == "progress":
            yield sse.event("progress", value)
        else:
            yield sse.event("done", build_out(value))
