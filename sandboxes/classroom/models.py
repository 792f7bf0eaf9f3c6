"""Courses, invites, enrollments, shares and workspace archives.

Built on the core: a course uses a core ``Template`` (``sandboxes.models``), and a
student's sandbox is a core ``Sandbox``; the core knows nothing of this app.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from sandboxes.models import NAME_PATTERN, Sandbox, Template, new_sandbox_id

__all__ = [
    "NAME_PATTERN",
    "Archive",
    "Course",
    "Enrollment",
    "Invite",
    "Share",
    "Template",
    "TutorialProgress",
]


def new_invite_token() -> str:
    return secrets.token_urlsafe(18)


class Course(models.Model):
    id = models.CharField(primary_key=True, max_length=12, default=new_sandbox_id, editable=False)
    teacher = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="courses_taught"
    )
    name = models.CharField(max_length=100)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="courses")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Invite(models.Model):
    """A link that enrols whoever follows it; expiring and revocable."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=32, unique=True, default=new_invite_token)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invite to {self.course_id}"


class Enrollment(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrollments")
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrollments"
    )
    sandbox = models.OneToOneField(
        Sandbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollment"
    )
    joined_at = models.DateTimeField(auto_now_add=True)
    # The starter commit last merged into this student's workspace, and how it went.
    starter_head = models.CharField(max_length=40, blank=True, default="")
    last_update = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["course", "student"], name="unique_enrollment")
        ]
        ordering = ["joined_at"]

    def __str__(self) -> str:
        return f"{self.student_id} in {self.course_id}"


class Share(models.Model):
    """Something a student shows the class: a read-only view or a preview URL."""

    class Kind(models.TextChoices):
        VIEW = "view"
        PREVIEW = "preview"

    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="shares")
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="shares")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    port = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.sandbox_id}"


class Archive(models.Model):
    """A student's workspace as it was before a reset, kept as a .tar.gz."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="archives")
    path = models.CharField(max_length=500)
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.path


class TutorialProgress(models.Model):
    """How far a learner got in their sandbox's tutorial; reset with the workspace.

    Keyed by sandbox (a sandbox made from a template outside any course has a
    tutorial too); ``checks`` is every check, oldest first (the last
    ``MAX_CHECKS``), ``events`` what the background scripts and assets did.
    """

    MAX_CHECKS = 200

    sandbox = models.OneToOneField(
        Sandbox, primary_key=True, on_delete=models.CASCADE, related_name="tutorial_progress"
    )
    current = models.PositiveIntegerField(default=1)
    finished_at = models.DateTimeField(null=True, blank=True)
    checks = models.JSONField(default=list, blank=True)
    events = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.sandbox_id} at step {self.current}"
