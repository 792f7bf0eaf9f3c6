"""API v1: a sandbox's guided tutorial, the teacher's progress view and authoring.

The learner (the sandbox's owner) reads steps and runs checks; whoever may look at
the sandbox (its course's teacher) reads the same without changing anything;
anyone else gets 404. Mounted with the classroom's routes (``ClassroomConfig``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.http import HttpResponse
from ninja import Router, Schema
from pydantic import Field

from sandboxes.api.auth import AuthedRequest
from sandboxes.api.schemas import ErrorOut, StrictIn
from sandboxes.classroom import services as classroom
from sandboxes.classroom import tutorials
from sandboxes.templates import service as templates

router = Router(tags=["tutorials"])
IMAGE = {
    "responses": {
        200: {
            "description": "The image (PNG, JPEG, GIF or WebP).",
            "content": {kind: {"schema": {"type": "string"}} for kind in tutorials.IMAGE_TYPES},
        }
    }
}
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut}


class CheckOut(Schema):
    passed: bool
    output: str
    step: int
    current: int
    finished: bool
    at: str


class CheckIn(StrictIn):
    step: Annotated[int, Field(ge=1, le=1000)] | None = None


class StepSummary(Schema):
    index: int
    title: str
    done: bool
    verify: bool
    last_check: dict[str, Any] | None


class TutorialOut(Schema):
    title: str
    description: str
    steps: list[StepSummary]
    current: int
    total: int
    finished: bool
    has_intro: bool
    has_finish: bool
    last_check: dict[str, Any] | None
    unsupported: list[str]
    warnings: list[dict[str, Any]]
    events: list[dict[str, Any]]


class ActionOut(Schema):
    index: int
    kind: Literal["exec", "copy"]
    code: str
    interrupt: bool


class StepOut(Schema):
    index: int
    kind: Literal["intro", "step", "finish"]
    title: str
    markdown: str
    actions: list[ActionOut]
    verify: bool
    foreground: str | None
    total: int


class ProgressOut(Schema):
    title: str
    total: int
    valid: bool
    steps: list[dict[str, Any]]
    students: list[dict[str, Any]]


class ValidationOut(Schema):
    found: bool
    valid: bool
    title: str = ""
    root: str = ""
    steps: int = 0
    problems: list[dict[str, Any]]
    unsupported: list[str]


class PreviewOut(Schema):
    title: str
    description: str
    unsupported: list[str]
    warnings: list[dict[str, Any]]
    pages: list[StepOut]


# ----------------------------------------------------------------------- the learner


@router.get("/sandboxes/{sandbox_id}/tutorial", response={200: TutorialOut, **ERRORS})
async def get_tutorial(request: AuthedRequest, sandbox_id: str) -> dict[str, Any]:
    """The sandbox's tutorial: its steps, which are done, and the current one (the
    owner's first look starts it: assets copied, background scripts run)."""
    tutorial = await tutorials.open_tutorial(request.auth, sandbox_id)
    return tutorials.summary(tutorial.scenario, tutorial.progress)


@router.get("/sandboxes/{sandbox_id}/tutorial/steps/{n}", response={200: StepOut, **ERRORS})
async def get_step(request: AuthedRequest, sandbox_id: str, n: int) -> dict[str, Any]:
    """One step's markdown and actions (0: the intro; total+1: the finish); steps past
    the current one are locked (409 `step_locked`)."""
    tutorial = await tutorials.open_tutorial(request.auth, sandbox_id)
    total = len(tutorial.scenario.steps)
    current = min(tutorial.progress.current, total + 1)
    return tutorials.page(tutorial.scenario, n, current, tutorial.files_url)


@router.post("/sandboxes/{sandbox_id}/tutorial/check", response={200: CheckOut, **ERRORS})
async def check_step(
    request: AuthedRequest, sandbox_id: str, payload: CheckIn | None = None
) -> dict[str, Any]:
    """Run the current step's verify script in the sandbox (as its user, with a
    timeout); the learner moves on only when it exits 0."""
    tutorial = await tutorials.open_tutorial(request.auth, sandbox_id, action="use")
    return await tutorials.check(tutorial, payload.step if payload else None)


@router.get(
    "/sandboxes/{sandbox_id}/tutorial/files/{path:path}",
    response={200: None, **ERRORS},
    openapi_extra=IMAGE,
)
async def tutorial_file(request: AuthedRequest, sandbox_id: str, path: str) -> HttpResponse:
    """An image of the tutorial's folder, from the template's starter."""
    tutorial = await tutorials.open_tutorial(request.auth, sandbox_id)
    data, kind = await tutorials.tutorial_file(tutorial.template, path)
    return _image(data, kind)


def _image(data: bytes, kind: str) -> HttpResponse:
    response = HttpResponse(data, content_type=kind)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=300"
    return response


# ----------------------------------------------------------------------- the teacher


@router.get(
    "/courses/{course_id}/progress",
    response={200: ProgressOut, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "Each student's step and checks; `?format=csv` as CSV.",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def course_progress(
    request: AuthedRequest, course_id: str, format: Literal["json", "csv"] = "json"
) -> dict[str, Any] | HttpResponse:
    """Each student's step reached and last check in the course's tutorial."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    data = await tutorials.course_progress(course)
    if format == "csv":
        response = HttpResponse(tutorials.progress_csv(data), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="progress-{course.id}.csv"'
        return response
    return data


@router.get("/templates/{template_id}/tutorial/validate", response={200: ValidationOut, **ERRORS})
async def validate_tutorial(request: AuthedRequest, template_id: str) -> dict[str, Any]:
    """Check the template's tutorial: every problem with its file and line."""
    template = await templates.get_template(request.auth, template_id)
    return await tutorials.validate(template)


@router.get("/templates/{template_id}/tutorial/preview", response={200: PreviewOut, **ERRORS})
async def preview_tutorial(request: AuthedRequest, template_id: str) -> dict[str, Any]:
    """Every page of the template's tutorial, as students will see them."""
    template = await templates.get_template(request.auth, template_id)
    found = await tutorials.preview(template)
    files = f"/api/v1/templates/{template.id}/tutorial/files"
    total = len(found.steps)
    first = 0 if found.intro else 1
    pages = [tutorials.page(found, n, None, files) for n in range(first, total + 2)]
    return {
        "title": found.title,
        "description": found.description,
        "unsupported": found.unsupported,
        "warnings": [p.as_dict() for p in found.problems if p.level == "warning"],
        "pages": pages,
    }


@router.get(
    "/templates/{template_id}/tutorial/files/{path:path}",
    response={200: None, **ERRORS},
    openapi_extra=IMAGE,
)
async def template_tutorial_file(
    request: AuthedRequest, template_id: str, path: str
) -> HttpResponse:
    """An image of the template's tutorial (for the preview)."""
    template = await templates.get_template(request.auth, template_id)
    data, kind = await tutorials.tutorial_file(template, path)
    return _image(data, kind)
