"""What the classroom tells the core through its seams (registered in ``apps.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.db.models import Q
from django.urls import Resolver404, resolve
from django.utils import timezone

from sandboxes.classroom.models import Enrollment, Invite
from sandboxes.classroom.services import find_invite
from sandboxes.errors import SandboxError
from sandboxes.models import Sandbox, Template


async def open_for_joining(template: Template) -> bool:
    """The warm pool's demand: a course on the template has an invite link students
    can still use."""
    now = timezone.now()
    return (
        await Invite.objects.filter(course__template=template, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .aexists()
    )


async def invitation_valid(next_url: str) -> bool:
    """SIGNUP=invite lets someone sign up on the way to a usable invite link
    (``/join/<token>/``)."""
    try:
        match = resolve(urlsplit(next_url).path)
    except Resolver404:
        return False
    if match.url_name != "join":
        return False
    try:
        await find_invite(str(match.kwargs["token"]))
    except SandboxError:
        return False
    return True


async def record_starter_update(
    sender: type[Template], sandbox: Sandbox, report: dict[str, Any], **kwargs: Any
) -> None:
    """A student's own starter update: the enrolment keeps how it went."""
    await Enrollment.objects.filter(sandbox=sandbox).aupdate(
        starter_head=report.get("head", ""), last_update=report
    )
