"""Courses: invites, joining, the teacher's roster, reset, starter updates, sharing.

Every function checks who is asking: a course's teacher manages it; its students
see the course and what classmates shared with it, nothing else. Someone with no
part in a course gets the same 404 as for a course that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from sandboxes import files, lifecycle, ports
from sandboxes.classroom import tutorials
from sandboxes.classroom.models import Archive, Course, Enrollment, Invite, Share
from sandboxes.errors import BadRequest, Conflict, Forbidden, NotFound, SandboxError
from sandboxes.execs import ExecRequest, exec_collect
from sandboxes.models import Sandbox, Template
from sandboxes.progress import Report, Step, ignore
from sandboxes.templates import pool, starter
from sandboxes.templates.launch import create_sandbox_from_template

log = logging.getLogger(__name__)

Role = Literal["teacher", "member"]

# Starter updates and resets run on this many student sandboxes at once.
FAN_OUT = 8


class Gone(SandboxError):
    status = 410
    code = "invite_expired"
    default_message = "This invite link has expired or was revoked."


# ----------------------------------------------------------------------- courses


async def create_course(teacher: User, name: str, template_id: str) -> Course:
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise BadRequest(
            "A course needs a name of 1 to 100 printable characters.", code="invalid_name"
        )
    try:
        template = await Template.objects.aget(pk=template_id, owner=teacher)
    except Template.DoesNotExist:
        raise NotFound(f"No template with id {template_id!r}.", code="not_found") from None
    course = await Course.objects.acreate(teacher=teacher, name=name, template=template)
    pool.request_fill(template.id)
    return course


async def list_courses(user: User) -> tuple[list[Course], list[Course]]:
    """(courses the user teaches, courses the user is enrolled in)."""
    taught = [
        c async for c in Course.objects.filter(teacher=user).select_related("template", "teacher")
    ]
    enrolled = [
        c
        async for c in Course.objects.filter(enrollments__student=user)
        .select_related("template", "teacher")
        .distinct()
    ]
    return taught, enrolled


async def get_course(user: User, course_id: str, role: Role = "member") -> Course:
    """The course if the user teaches it (or, for ``member``, is enrolled in it).

    A student asking for a teacher's action gets 403; a stranger gets 404.
    """
    try:
        course = await Course.objects.select_related("template", "teacher").aget(pk=course_id)
    except Course.DoesNotExist:
        raise NotFound(f"No course with id {course_id!r}.", code="not_found") from None
    if course.teacher_id == user.pk:
        return course
    enrolled = await Enrollment.objects.filter(course=course, student=user).aexists()
    if not enrolled:
        raise NotFound(f"No course with id {course_id!r}.", code="not_found")
    if role == "teacher":
        raise Forbidden("Only the course's teacher can do that.", code="teacher_only")
    return course


async def delete_course(course: Course) -> None:
    """The students keep their sandboxes; the course, invites and shares go."""
    await course.adelete()


# ----------------------------------------------------------------------- invites


async def create_invite(course: Course, days: float | None = None) -> Invite:
    days = settings.CLASSROOM_INVITE_DAYS if days is None else days
    if not 0 < days <= 365:
        raise BadRequest("expires_in_days must be more than 0 and at most 365.", code="invalid")
    return await Invite.objects.acreate(
        course=course, expires_at=timezone.now() + timedelta(days=days)
    )


async def revoke_invite(course: Course, invite_id: int) -> Invite:
    invite = await Invite.objects.filter(course=course, pk=invite_id).afirst()
    if invite is None:
        raise NotFound(f"No invite {invite_id} in this course.", code="not_found")
    if invite.revoked_at is None:
        invite.revoked_at = timezone.now()
        await invite.asave(update_fields=["revoked_at"])
    return invite


def invite_state(invite: Invite) -> str:
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at is not None and invite.expires_at <= timezone.now():
        return "expired"
    return "active"


async def find_invite(token: str) -> Invite:
    """A usable invite; unknown tokens are 404, expired or revoked ones 410."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,32}", token or ""):
        raise NotFound("No such invite link.", code="not_found")
    invite = (
        await Invite.objects.select_related("course__template", "course__teacher")
        .filter(token=token)
        .afirst()
    )
    if invite is None:
        raise NotFound("No such invite link.", code="not_found")
    state = invite_state(invite)
    if state != "active":
        raise Gone(f"This invite link was {state}: ask your teacher for a new one.")
    return invite


# ----------------------------------------------------------------------- joining


def _sandbox_name(course: Course) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", course.name.lower()).strip("-")[:24].strip("-")
    return f"{slug or 'course'}-{course.id[:6]}"


@dataclass
class Joined:
    enrollment: Enrollment
    sandbox: Sandbox
    created: bool  # a new enrollment (False: the student had joined before)
    from_pool: bool = False


async def joinable(user: User, token: str) -> Invite:
    """The invite ``user`` may join by (404 unknown, 410 expired or revoked, 400 for
    the course's own teacher)."""
    invite = await find_invite(token)
    if invite.course.teacher_id == user.pk:
        raise BadRequest(
            "You teach this course; invite links are for your students.", code="is_teacher"
        )
    return invite


async def join(user: User, token: str, report: Report = ignore) -> Joined:
    """Enrol the user (once) and give them their sandbox from the course's template.

    Joining again returns the same sandbox. A ready one is taken from the template's
    warm pool when there is one; otherwise it is built now (``report``: its stages).
    """
    invite = await joinable(user, token)
    course = invite.course
    try:
        enrollment = await Enrollment.objects.acreate(course=course, student=user)
        created = True
        await Invite.objects.filter(pk=invite.pk).aupdate(uses=invite.uses + 1)
    except IntegrityError:
        enrollment = await Enrollment.objects.aget(course=course, student=user)
        created = False
    if enrollment.sandbox_id:
        sandbox = await Sandbox.objects.aget(pk=enrollment.sandbox_id)
        return Joined(enrollment, sandbox, created)
    sandbox, from_pool = await _sandbox_for(user, course, report)
    enrollment.sandbox = sandbox
    enrollment.starter_head = course.template.starter_head
    await enrollment.asave(update_fields=["sandbox", "starter_head"])
    return Joined(enrollment, sandbox, created, from_pool)


async def _sandbox_for(user: User, course: Course, report: Report) -> tuple[Sandbox, bool]:
    name = _sandbox_name(course)
    existing = await Sandbox.objects.filter(owner=user, name=name).afirst()
    if existing is not None:  # a half-finished earlier join
        return existing, False
    await lifecycle.check_sandbox_quota(user, name)
    claimed = await pool.claim(course.template, user, name)
    if claimed is not None:
        await report(Step("pool", "A ready sandbox was waiting for you"))
        return claimed, True
    sandbox = await create_sandbox_from_template(user, course.template, name, report=report)
    return sandbox, False


# ----------------------------------------------------------------------- teacher's view


async def roster(course: Course) -> list[dict[str, Any]]:
    """Each student's sandbox, starter and, when the template has a tutorial, the
    step reached and last check (``tutorial``: null before they start it)."""
    steps = await tutorials.roster_columns(course)
    rows = []
    async for e in Enrollment.objects.filter(course=course).select_related("student", "sandbox"):
        box = e.sandbox
        rows.append(
            {
                "student": {"id": e.student_id, "username": e.student.get_username()},
                "joined_at": e.joined_at,
                "sandbox": None
                if box is None
                else {
                    "id": box.id,
                    "name": box.name,
                    "status": box.status,
                    "sleep_tier": box.sleep_tier,
                    "last_active_at": box.last_active_at,
                },
                "starter_head": e.starter_head,
                "last_update": e.last_update,
                "tutorial": steps.get(e.sandbox_id or ""),
            }
        )
    return rows


async def get_enrollment(course: Course, student_id: int) -> Enrollment:
    if not 0 < student_id < 2**63:  # beyond any database id
        raise NotFound(f"No student {student_id} in this course.", code="not_found")
    enrollment = (
        await Enrollment.objects.select_related("student", "sandbox", "course__template")
        .filter(course=course, student_id=student_id)
        .afirst()
    )
    if enrollment is None:
        raise NotFound(f"No student {student_id} in this course.", code="not_found")
    return enrollment


def _archive_dir(course_id: str) -> Path:
    path = Path(settings.CLASSROOM_DIR) / "archives" / course_id
    path.mkdir(parents=True, exist_ok=True)
    return path


async def archive_workspace(enrollment: Enrollment) -> Archive:
    """Stream the student's /workspace into a .tar.gz kept on the server."""
    sandbox = enrollment.sandbox
    if sandbox is None:
        raise Conflict("This student has no sandbox.", code="no_sandbox")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = _archive_dir(enrollment.course_id) / f"{enrollment.student_id}-{stamp}.tar.gz"
    download = await files.archive(sandbox, "/workspace")
    size = 0
    try:
        with target.open("wb") as out:
            async for chunk in download.chunks:
                await asyncio.to_thread(out.write, chunk)
                size += len(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        await download.close()
    return await Archive.objects.acreate(enrollment=enrollment, path=str(target), size=size)


async def reset_workspace(enrollment: Enrollment) -> Archive:
    """Archive the workspace, empty it and install the template's starter afresh;
    the tutorial starts over too."""
    archive = await archive_workspace(enrollment)
    sandbox = enrollment.sandbox
    assert sandbox is not None  # noqa: S101 - archive_workspace checked
    result = await exec_collect(
        sandbox,
        ExecRequest(command="find /workspace -mindepth 1 -delete", cwd="/", timeout=120),
    )
    if result.exit_code != 0:
        raise SandboxError(f"Could not empty the workspace: {result.stderr[-500:]}")
    template = enrollment.course.template
    await starter.install(sandbox, template)
    enrollment.starter_head = template.starter_head
    enrollment.last_update = {}
    await enrollment.asave(update_fields=["starter_head", "last_update"])
    await tutorials.reset(sandbox)
    return archive


async def get_archive(course: Course, user: User, archive_id: int) -> Archive:
    """An archive of a reset workspace, for the teacher or the student it belongs to."""
    archive = (
        await Archive.objects.select_related("enrollment")
        .filter(pk=archive_id, enrollment__course=course)
        .afirst()
    )
    if archive is None or (
        course.teacher_id != user.pk and archive.enrollment.student_id != user.pk
    ):
        raise NotFound(f"No archive {archive_id}.", code="not_found")
    return archive


async def _students_with_sandboxes(course: Course) -> list[Enrollment]:
    return [
        e
        async for e in Enrollment.objects.filter(course=course, sandbox__isnull=False)
        .select_related("student", "sandbox", "course__template")
        .order_by("student__username")
    ]


async def _each_student(
    enrollments: list[Enrollment],
    verb: str,
    work: Callable[[Enrollment], Awaitable[dict[str, Any]]],
    report: Report,
) -> list[dict[str, Any]]:
    """``work`` on every student, FAN_OUT at a time, reporting each one as it ends.

    One student's failure is that student's result (``status: "failed"`` with the
    reason), never the end of the others.
    """
    total = len(enrollments)
    done = 0
    gate = asyncio.Semaphore(FAN_OUT)
    await report(Step("students", f"{verb} {total} students", current=0, total=total))

    async def one(enrollment: Enrollment) -> dict[str, Any]:
        nonlocal done
        name = enrollment.student.get_username()
        async with gate:
            try:
                result = await work(enrollment)
            except SandboxError as exc:
                result = {"status": "failed", "error": exc.message}
            except OSError as exc:  # the server's own disk (an archive being written)
                log.exception("%s for %s failed", verb, name)
                result = {"status": "failed", "error": f"The server could not do it: {exc}"}
        done += 1
        line = {"student": name, "student_id": enrollment.student_id, **result}
        error = result.get("error")
        outcome = f"failed: {error}" if error else result["status"].replace("_", " ")
        await report(
            Step(
                "student",
                f"{done} of {total} students: {name} {outcome}",
                current=done,
                total=total,
                detail={k: v for k, v in line.items() if k != "archive"},
            )
        )
        return line

    return list(await asyncio.gather(*(one(e) for e in enrollments)))


async def push_update(course: Course, report: Report = ignore) -> dict[str, Any]:
    """Fetch the starter again (if it comes from a repository) and merge it into every
    student's workspace, nbgitpuller-style: students' edits are never overwritten."""
    template = course.template
    if template.repo_url:
        await report(Step("fetch", f"Fetching the starter from {template.repo_url}"))
        await starter.import_repo(template)

    async def one(enrollment: Enrollment) -> dict[str, Any]:
        assert enrollment.sandbox is not None  # noqa: S101 - filtered above
        try:
            result = await starter.update(enrollment.sandbox, template)
        except SandboxError as exc:
            result = {"status": "failed", "error": exc.message}
        result["at"] = timezone.now().isoformat()
        enrollment.last_update = result
        fields = ["last_update"]
        if result.get("status") in ("updated", "up_to_date"):
            enrollment.starter_head = template.starter_head
            fields.append("starter_head")
        await enrollment.asave(update_fields=fields)
        return result

    enrollments = await _students_with_sandboxes(course)
    results = await _each_student(enrollments, "Updating", one, report)
    return {"starter_head": template.starter_head, "students": results}


async def reset_class(course: Course, report: Report = ignore) -> dict[str, Any]:
    """``reset_workspace`` for every student who has a sandbox; each result is
    ``{"status": "reset", "archive": Archive}`` or ``{"status": "failed", "error"}``."""

    async def one(enrollment: Enrollment) -> dict[str, Any]:
        return {"status": "reset", "archive": await reset_workspace(enrollment)}

    enrollments = await _students_with_sandboxes(course)
    return {"students": await _each_student(enrollments, "Resetting", one, report)}


# ----------------------------------------------------------------------- sharing


async def list_shares(course: Course) -> list[Share]:
    return [
        s
        async for s in Share.objects.filter(course=course, revoked_at__isnull=True).select_related(
            "sandbox__owner"
        )
    ]


async def share(user: User, course: Course, sandbox_id: str, kind: str, port: int | None) -> Share:
    """Show the class a read-only view of one's sandbox, or one of its preview URLs."""
    sandbox = await lifecycle.get_sandbox(user, sandbox_id)  # only one's own
    if kind not in Share.Kind.values:
        raise BadRequest("kind must be 'view' or 'preview'.", code="invalid_kind")
    if kind == Share.Kind.PREVIEW:
        port = ports.validate_port(port)
        exposed = await sandbox.exposed_ports.filter(port=port).afirst()
        if exposed is None:
            await ports.expose(sandbox, port)
        elif ports.visibility(exposed) == ports.Visibility.PRIVATE:  # opened in the IDE
            await ports.share(sandbox, port, ports.Visibility.COURSE)
    else:
        port = None
    existing = await Share.objects.filter(
        sandbox=sandbox, course=course, kind=kind, port=port, revoked_at__isnull=True
    ).afirst()
    if existing is not None:
        return existing
    return await Share.objects.acreate(sandbox=sandbox, course=course, kind=kind, port=port)


async def revoke_share(user: User, course: Course, share_id: int) -> None:
    """By the student who shared or the teacher; a preview's URL stops working too."""
    item = (
        await Share.objects.select_related("sandbox")
        .filter(pk=share_id, course=course, revoked_at__isnull=True)
        .filter(Q(sandbox__owner=user) | Q(course__teacher=user))
        .afirst()
    )
    if item is None:
        raise NotFound(f"No share {share_id} in this course.", code="not_found")
    item.revoked_at = timezone.now()
    await item.asave(update_fields=["revoked_at"])
    if item.kind == Share.Kind.PREVIEW and item.port:
        with contextlib.suppress(NotFound):
            await ports.unexpose(item.sandbox, item.port)
