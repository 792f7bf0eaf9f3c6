"""Who may look at a sandbox they do not own.

Owners do everything with their sandboxes. Beyond that, and only to read (files,
terminal output, status): the teacher of a course the sandbox is enrolled in, and,
while a student shares a read-only view with a course, that course's teacher and
students. Nobody but the owner ever writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from django.contrib.auth.models import User
from django.db.models import Q

from sandboxes.classroom.models import Enrollment, Share


async def can_view(user: User, sandbox_id: str) -> bool:
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


# A viewer's open streams (terminal output, file watch) notice a revoked view within
# this many seconds and end.
RECHECK_SECONDS = 5.0


async def until_revoked(
    user: User, sandbox_id: str, interval: float = RECHECK_SECONDS
) -> None:
    """Return once ``user`` may no longer look at the sandbox (run it as a task)."""
    while True:
        await asyncio.sleep(interval)
        if not await can_view(user, sandbox_id):
            return


async def while_allowed(
    events: AsyncIterator[bytes],
    user: User,
    sandbox_id: str,
    interval: float = RECHECK_SECONDS,
) -> AsyncIterator[bytes]:
    """Pass a viewer's stream through, ending it once the view is revoked (checked
    between chunks, which the stream's keep-alives make at least periodic)."""
    checked = time.monotonic()
    try:
        async for chunk in events:
            if time.monotonic() - checked >= interval:
                checked = time.monotonic()
                if not await can_view(user, sandbox_id):
                    return
            yield chunk
    finally:
        await events.aclose()  # type: ignore[attr-defined]
