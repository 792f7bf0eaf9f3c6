"""The classroom's rule in the core's policy (``sandboxes.policy``).

Owners do everything with their sandboxes. Beyond that, and only to look (files,
terminal output, status, previews): the teacher of a course the sandbox is
enrolled in, and, while a student shares a read-only view with a course, that
course's teacher and students. Nobody but the owner ever changes a sandbox.

``in_course`` says who a preview shared at the ``course`` level admits: the
teacher and the students of the course the sandbox is enrolled in.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q

from sandboxes.classroom.models import Enrollment, Share
from sandboxes.models import Sandbox
from sandboxes.policy import Action


async def can_view(user: User | AnonymousUser, sandbox_id: str) -> bool:
    if not user.is_authenticated:
        return False
    if await Enrollment.objects.filter(sandbox_id=sandbox_id, course__teacher=user).aexists():
        return True
    return (
        await Share.objects.filter(
            sandbox_id=sandbox_id, kind=Share.Kind.VIEW, revoked_at__isnull=True
        )
        .filter(Q(course__teacher=user) | Q(course__enrollments__student=user))
        .aexists()
    )


async def in_course(user: User, sandbox: Sandbox) -> bool:
    """The teacher or a student of a course the sandbox is enrolled in."""
    return await Enrollment.objects.filter(
        Q(course__teacher=user) | Q(course__enrollments__student=user),
        sandbox_id=sandbox.id,
    ).aexists()


async def rule(user: User | AnonymousUser, action: Action, sandbox: Sandbox) -> bool | None:
    """A course's teacher and a class shown the sandbox may look; no opinion else."""
    if action == "view" and await can_view(user, sandbox.id):
        return True
    return None
