"""API v1: courses, invite links, the teacher's roster, reset, starter updates, shares.

A course's teacher manages it; its students see the course and what classmates
share; anyone else gets 404. Teachers look into a student's sandbox through the
ordinary sandbox routes, which the classroom's policy rule lets them read. The
router is mounted on the API by the app's ``ready()`` (``ClassroomConfig``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from django.http import FileResponse, StreamingHttpResponse
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from sandboxes import ports, progress
from sandboxes.api import sse
from sandboxes.api.auth import AuthedRequest
from sandboxes.api.ports import request_origin
from sandboxes.api.schemas import ErrorOut, StrictIn
from sandboxes.classroom import services as classroom
from sandboxes.classroom import tutorials
from sandboxes.classroom.models import Course, Invite, Share
from sandboxes.errors import NotFound

router = Router(tags=["classroom"])
ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    410: ErrorOut,
    503: ErrorOut,
}


class CourseIn(StrictIn):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    template: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CourseOut(Schema):
    id: str
    name: str
    role: Literal["teacher", "student"]
    teacher: str
    template: dict[str, Any]
    created_at: datetime


class CourseList(Schema):
    teaching: list[CourseOut]
    enrolled: list[CourseOut]


class InviteIn(StrictIn):
    expires_in_days: Annotated[float, Field(gt=0, le=365)] | None = None


class InviteOut(Schema):
    id: int
    token: str
    path: str
    state: Literal["active", "expired", "revoked"]
    expires_at: datetime | None
    uses: int
    created_at: datetime


class InviteList(Schema):
    invites: list[InviteOut]


class InviteInfo(Schema):
    course: str
    course_name: str
    teacher: str
    expires_at: datetime | None


class JoinOut(Schema):
    course: str
    sandbox: str
    created: bool
    from_pool: bool
    ide_path: str


class RosterOut(Schema):
    students: list[dict[str, Any]]
    # The course's tutorial ({"title", "total"}), or null when its template has none.
    tutorial: dict[str, Any] | None = None


class ArchiveOut(Schema):
    id: int
    size: int
    created_at: datetime
    path: str


class ArchiveList(Schema):
    archives: list[ArchiveOut]


class UpdateOut(Schema):
    starter_head: str
    students: list[dict[str, Any]]


class ClassResetOut(Schema):
    students: list[dict[str, Any]]


# Whole-class operations answer JSON, or with ``Accept: text/event-stream`` progress.
STREAMS = {
    "responses": {
        200: {
            "description": "The result, or with `Accept: text/event-stream` `progress` "
            "events (one per student as each ends) and one `done` event.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}


class ShareIn(StrictIn):
    sandbox: Annotated[str, StringConstraints(min_length=1, max_length=12)]
    kind: Literal["view", "preview"]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class ShareOut(Schema):
    id: int
    kind: str
    sandbox: str
    owner: str
    port: int | None
    url: str | None
    created_at: datetime


class ShareList(Schema):
    shares: list[ShareOut]


def course_out(course: Course, user: Any) -> dict[str, Any]:
    template = course.template
    return {
        "id": course.id,
        "name": course.name,
        "role": "teacher" if course.teacher_id == user.pk else "student",
        "teacher": course.teacher.get_username(),
        "template": {
            "id": template.id,
            "name": template.name,
            "open_files": template.open_files,
            "preview_port": template.preview_port,
        },
        "created_at": course.created_at,
    }


async def share_out(item: Share, origin: ports.Origin | None = None) -> dict[str, Any]:
    """A share as JSON; a preview's URL is its current one (or null once unexposed)."""
    out: dict[str, Any] = {
        "id": item.pk,
        "kind": item.kind,
        "sandbox": item.sandbox_id,
        "owner": item.sandbox.owner.get_username(),
        "created_at": item.created_at,
        "port": item.port,
        "url": None,
    }
    if item.kind == Share.Kind.PREVIEW and item.port:
        exposed = await item.sandbox.exposed_ports.filter(port=item.port).afirst()
        out["url"] = ports.preview_url(exposed, origin) if exposed else None
    else:
        out["url"] = f"/sandboxes/{item.sandbox_id}/"
    return out


def invite_out(invite: Invite) -> dict[str, Any]:
    return {
        "id": invite.pk,
        "token": invite.token,
        "path": f"/join/{invite.token}/",
        "state": classroom.invite_state(invite),
        "expires_at": invite.expires_at,
        "uses": invite.uses,
        "created_at": invite.created_at,
    }


# ----------------------------------------------------------------------- courses


@router.get("/courses", response={200: CourseList, **ERRORS})
async def list_courses(request: AuthedRequest) -> dict[str, Any]:
    """Courses you teach and courses you joined."""
    taught, enrolled = await classroom.list_courses(request.auth)
    return {
        "teaching": [course_out(c, request.auth) for c in taught],
        "enrolled": [course_out(c, request.auth) for c in enrolled],
    }


@router.post("/courses", response={201: CourseOut, **ERRORS})
async def create_course(request: AuthedRequest, payload: CourseIn) -> tuple[int, dict[str, Any]]:
    """Start a course on one of your templates; you are its teacher."""
    course = await classroom.create_course(request.auth, payload.name, payload.template)
    course = await Course.objects.select_related("template", "teacher").aget(pk=course.pk)
    return 201, course_out(course, request.auth)


@router.get("/courses/{course_id}", response={200: CourseOut, **ERRORS})
async def get_course(request: AuthedRequest, course_id: str) -> dict[str, Any]:
    return course_out(await classroom.get_course(request.auth, course_id), request.auth)


@router.delete("/courses/{course_id}", response={204: None, **ERRORS})
async def delete_course(request: AuthedRequest, course_id: str) -> tuple[int, None]:
    """Delete the course (students keep their sandboxes)."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    await classroom.delete_course(course)
    return 204, None


# ----------------------------------------------------------------------- invites


@router.get("/courses/{course_id}/invites", response={200: InviteList, **ERRORS})
async def list_invites(request: AuthedRequest, course_id: str) -> dict[str, Any]:
    course = await classroom.get_course(request.auth, course_id, "teacher")
    return {"invites": [invite_out(i) async for i in course.invites.all()]}


@router.post("/courses/{course_id}/invites", response={201: InviteOut, **ERRORS})
async def create_invite(
    request: AuthedRequest, course_id: str, payload: InviteIn | None = None
) -> tuple[int, dict[str, Any]]:
    """A new invite link; it expires after `expires_in_days` (a setting by default)."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    invite = await classroom.create_invite(course, payload.expires_in_days if payload else None)
    return 201, invite_out(invite)


@router.delete("/courses/{course_id}/invites/{invite_id}", response={200: InviteOut, **ERRORS})
async def revoke_invite(request: AuthedRequest, course_id: str, invite_id: int) -> dict[str, Any]:
    """Revoke an invite link at once (students who joined stay)."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    return invite_out(await classroom.revoke_invite(course, invite_id))


@router.get("/invites/{token}", response={200: InviteInfo, **ERRORS})
async def invite_info(request: AuthedRequest, token: str) -> dict[str, Any]:
    """What an invite link leads to (404 unknown, 410 expired or revoked)."""
    invite = await classroom.find_invite(token)
    return {
        "course": invite.course.id,
        "course_name": invite.course.name,
        "teacher": invite.course.teacher.get_username(),
        "expires_at": invite.expires_at,
    }


@router.post(
    "/invites/{token}/join",
    response={200: JoinOut, 201: JoinOut, **ERRORS},
    openapi_extra={
        "responses": {
            201: {
                "description": "Joined, or with `Accept: text/event-stream` the stages of "
                "making the sandbox as `progress` events and one `done` event.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def join(
    request: AuthedRequest, token: str
) -> tuple[int, dict[str, Any]] | StreamingHttpResponse:
    """Join the course: your own sandbox from its template, ready (201 first time)."""
    if sse.wants_stream(request.headers.get("Accept", "")):
        await classroom.joinable(request.auth, token)  # a bad link is a plain error
        steps = progress.follow(lambda report: classroom.join(request.auth, token, report))
        return sse.response(sse.progress(steps, _joined_out))
    joined = await classroom.join(request.auth, token)
    return (201 if joined.created else 200), _joined_out(joined)


def _joined_out(joined: classroom.Joined) -> dict[str, Any]:
    return {
        "course": joined.enrollment.course_id,
        "sandbox": joined.sandbox.id,
        "created": joined.created,
        "from_pool": joined.from_pool,
        "ide_path": f"/sandboxes/{joined.sandbox.id}/",
    }


# ----------------------------------------------------------------------- teacher's view


@router.get("/courses/{course_id}/students", response={200: RosterOut, **ERRORS})
async def roster(request: AuthedRequest, course_id: str) -> dict[str, Any]:
    """Each student with their sandbox's status, last activity and, when the template
    has a tutorial, their step and last check."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    return {
        "students": await classroom.roster(course),
        "tutorial": await tutorials.roster_tutorial(course),
    }


@router.post(
    "/courses/{course_id}/students/{student_id}/reset", response={200: ArchiveOut, **ERRORS}
)
async def reset_student(request: AuthedRequest, course_id: str, student_id: int) -> dict[str, Any]:
    """Archive the student's workspace (downloadable), then restore the template's."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    enrollment = await classroom.get_enrollment(course, student_id)
    archive = await classroom.reset_workspace(enrollment)
    return _archive_out(course, archive)


def _archive_out(course: Course, archive: Any) -> dict[str, Any]:
    return {
        "id": archive.pk,
        "size": archive.size,
        "created_at": archive.created_at,
        "path": f"/api/v1/courses/{course.id}/archives/{archive.pk}",
    }


@router.get(
    "/courses/{course_id}/students/{student_id}/archives", response={200: ArchiveList, **ERRORS}
)
async def list_archives(request: AuthedRequest, course_id: str, student_id: int) -> dict[str, Any]:
    """Archives of a student's reset workspaces (the teacher, or that student)."""
    course = await classroom.get_course(request.auth, course_id)
    if course.teacher_id != request.auth.pk and request.auth.pk != student_id:
        raise NotFound(f"No student {student_id} in this course.", code="not_found")
    enrollment = await classroom.get_enrollment(course, student_id)
    return {"archives": [_archive_out(course, a) async for a in enrollment.archives.all()]}


@router.get("/courses/{course_id}/archives/{archive_id}", response={200: None, **ERRORS})
async def download_archive(request: AuthedRequest, course_id: str, archive_id: int) -> FileResponse:
    course = await classroom.get_course(request.auth, course_id)
    archive = await classroom.get_archive(course, request.auth, archive_id)
    path = Path(archive.path)
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"workspace-{archive.created_at:%Y%m%d-%H%M%S}.tar.gz",
        content_type="application/gzip",
    )


@router.post(
    "/courses/{course_id}/update", response={200: UpdateOut, **ERRORS}, openapi_extra=STREAMS
)
async def push_update(
    request: AuthedRequest, course_id: str
) -> dict[str, Any] | StreamingHttpResponse:
    """Merge the latest starter into every student's workspace (edits never lost)."""
    course = await classroom.get_course(request.auth, course_id, "teacher")
    if sse.wants_stream(request.headers.get("Accept", "")):
        steps = progress.follow(lambda report: classroom.push_update(course, report))
        return sse.response(sse.progress(steps, lambda result: result))
    return await classroom.push_update(course)


@router.post(
    "/courses/{course_id}/reset", response={200: ClassResetOut, **ERRORS}, openapi_extra=STREAMS
)
async def reset_class(
    request: AuthedRequest, course_id: str
) -> dict[str, Any] | StreamingHttpResponse:
    """Reset every student's workspace (each archived first); one student's failure
    is reported for that student and the others go on."""
    course = await classroom.get_course(request.auth, course_id, "teacher")

    def shape(result: dict[str, Any]) -> dict[str, Any]:
        students = []
        for line in result["students"]:
            if "archive" in line:
                line = {**line, "archive": _archive_out(course, line["archive"])}
            students.append(line)
        return {"students": students}

    if sse.wants_stream(request.headers.get("Accept", "")):
        steps = progress.follow(lambda report: classroom.reset_class(course, report))
        return sse.response(sse.progress(steps, shape))
    return shape(await classroom.reset_class(course))


# ----------------------------------------------------------------------- sharing


@router.get("/courses/{course_id}/shares", response={200: ShareList, **ERRORS})
async def list_shares(request: AuthedRequest, course_id: str) -> dict[str, Any]:
    """What students share with the class: read-only views and preview URLs."""
    course = await classroom.get_course(request.auth, course_id)
    origin = request_origin(request)
    return {"shares": [await share_out(s, origin) for s in await classroom.list_shares(course)]}


@router.post("/courses/{course_id}/shares", response={201: ShareOut, **ERRORS})
async def create_share(
    request: AuthedRequest, course_id: str, payload: ShareIn
) -> tuple[int, dict[str, Any]]:
    """Share one of your sandboxes with the class (a preview exposes the port)."""
    course = await classroom.get_course(request.auth, course_id)
    item = await classroom.share(request.auth, course, payload.sandbox, payload.kind, payload.port)
    item = await Share.objects.select_related("sandbox__owner").aget(pk=item.pk)
    return 201, await share_out(item, request_origin(request))


@router.delete("/courses/{course_id}/shares/{share_id}", response={204: None, **ERRORS})
async def revoke_share(request: AuthedRequest, course_id: str, share_id: int) -> tuple[int, None]:
    """Stop sharing (the student who shared, or the teacher); a preview URL dies too."""
    course = await classroom.get_course(request.auth, course_id)
    await classroom.revoke_share(request.auth, course, share_id)
    return 204, None
