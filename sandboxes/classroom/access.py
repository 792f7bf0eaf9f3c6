"""Who may look at a sandbox they do not own.

Owners do everything with their sandboxes. Beyond that, and only to read (files,
terminal output, status): the teacher of a course the sandbox is enrolled in, and,
while a student shares a read-only view with a course, that course's teacher and
students. Nobody but the owner ever writes.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from sandboxes.classroom.models import Enrollment, Share


async def can_view(user: AbstractBaseUser, sandbox_id: str) -> bool:
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
