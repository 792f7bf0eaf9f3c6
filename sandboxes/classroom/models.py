"""Templates, courses, invites, enrollments, shares and workspace archives.

A sandbox refers to its template by id (``Sandbox.template``), so the sandbox core
does not depend on this app; everything here composes the core's services.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from sandboxes.models import NAME_PATTERN, Sandbox, new_sandbox_id

__all__ = [
    "NAME_PATTERN",
    "Archive",
    "Course",
    "Enrollment",
    "Invite",
    "PoolEntry",
    "Share",
    "Template",
]


def new_invite_token() -> str:
    return secrets.token_urlsafe(18)


def default_warm_pool() -> int:
    return int(getattr(settings, "CLASSROOM_WARM_POOL", 0))


class Template(models.Model):
    """A recipe for a sandbox: image, starter code, setup, env, limits, IDE hints.

    Starter code comes from a git repository (``repo_url``/``repo_branch``) or from
    uploaded files; either way the server keeps it as a git repository of its own
    (``starter.mirror_path``), which is what students' workspaces are cloned from
    and later merged with.
    """

    id = models.CharField(primary_key=True, max_length=12, default=new_sandbox_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_templates"
    )
    name = models.CharField(max_length=39)
    description = models.TextField(blank=True, default="")
    image = models.CharField(max_length=200, blank=True, default="")
    repo_url = models.CharField(max_length=500, blank=True, default="")
    repo_branch = models.CharField(max_length=200, blank=True, default="")
    setup_command = models.TextField(blank=True, default="")
    env = models.JSONField(default=dict, blank=True)
    # {"memory_mb": int, "cpus": float, "disk_mb": int}; each capped by the server's.
    limits = models.JSONField(default=dict, blank=True)
    open_files = models.JSONField(default=list, blank=True)
    preview_port = models.PositiveIntegerField(null=True, blank=True)
    warm_pool = models.PositiveIntegerField(default=default_warm_pool)
    # The starter commit new sandboxes get; empty until starter code was imported.
    starter_head = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_template_name_per_owner")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


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


class PoolEntry(models.Model):
    """A ready sandbox waiting for a student: owned by the pool user until claimed.

    Claiming deletes the entry (exactly one claimer wins) and hands the sandbox over.
    ``starter_head`` is the starter it was built with: entries of an older starter
    are replaced, never handed out.
    """

    sandbox = models.OneToOneField(Sandbox, on_delete=models.CASCADE, related_name="pool_entry")
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="pool")
    starter_head = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"pool {self.template_id}: {self.sandbox_id}"
