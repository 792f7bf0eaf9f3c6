"""What the server remembers about sandboxes, templates and API tokens.

Everything live about a sandbox (its processes, terminals, files) is in the
container; the row holds ownership, settings and the backend's state, enough to find
and adopt the container again after a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Any

from django.conf import settings
from django.db import models
from django.dispatch import Signal

_ID_ALPHABET = string.ascii_lowercase + string.digits
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,38}$"


def new_sandbox_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


# Sent after a bulk ``update`` of sandbox rows with the fields it wrote
# (``fields``, ``using``): saves and deletes have Django's own signals, bulk updates
# none, and the cache of sandbox lookups (``sandboxes.rows``) must hear of all three.
sandboxes_updated = Signal()


class SandboxQuerySet(models.QuerySet["Sandbox"]):
    def update(self, **kwargs: Any) -> int:
        count = super().update(**kwargs)
        if count:
            sandboxes_updated.send(sender=Sandbox, fields=frozenset(kwargs), using=self.db)
        return count


class Sandbox(models.Model):
    class Status(models.TextChoices):
        STARTING = "starting"
        RUNNING = "running"
        SLEEPING = "sleeping"
        ERROR = "error"

    id = models.CharField(primary_key=True, max_length=12, default=new_sandbox_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandboxes"
    )
    name = models.CharField(max_length=39)
    template = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTING)
    status_detail = models.TextField(blank=True, default="")
    # While sleeping: "paused" (memory kept, fast wake) or "stopped" (memory freed).
    sleep_tier = models.CharField(max_length=8, blank=True, default="")
    # "all" (default), "none" (no network at all, only the agent's socket) or "allow":
    # only the hosts and CIDRs in ``egress_allow`` (sandboxes/egress/policy.py).
    egress = models.CharField(max_length=8, default="all")
    egress_allow = models.JSONField(default=list, blank=True)
    # Why the container got no network although egress "all" was asked for (the host
    # firewall could not be installed); empty when it has what it asked for.
    egress_detail = models.TextField(blank=True, default="")
    env = models.JSONField(default=dict, blank=True)
    sleep_after = models.PositiveIntegerField(default=600)
    keep_alive = models.BooleanField(default=False)
    image = models.CharField(max_length=200, blank=True, default="")
    # Per-sandbox resource limits from a template: {"memory_mb", "cpus", "disk_mb"}.
    limits = models.JSONField(default=dict, blank=True)
    backend_state = models.JSONField(default=dict, blank=True)
    # The snapshot (an id) whose files the sandbox was made from or rolled back to:
    # a new workspace volume is seeded from it.
    source_snapshot = models.CharField(max_length=12, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_active_at = models.DateTimeField(auto_now_add=True)

    objects = SandboxQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_sandbox_name_per_owner")
        ]
        ordering = ["-created_at"]
        verbose_name_plural = "sandboxes"

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Snapshot(models.Model):
    """A sandbox's files at one moment: its workspace and its root filesystem's
    changes (installed packages), kept by the backend (``backend_state``).

    It outlives its sandbox (``sandbox_id`` is no foreign key) and belongs to the
    sandbox's owner; new sandboxes start from it, or a sandbox is rolled back to it.
    """

    id = models.CharField(primary_key=True, max_length=12, default=new_sandbox_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="snapshots"
    )
    name = models.CharField(max_length=39)
    sandbox_id = models.CharField(max_length=12, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    paused_ms = models.FloatField(default=0)
    backend_state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


def default_warm_pool() -> int:
    return int(getattr(settings, "CLASSROOM_WARM_POOL", 0))


class Template(models.Model):
    """A recipe for a sandbox: image, starter code, setup, env, limits, IDE hints.

    Starter code comes from a git repository (``repo_url``/``repo_branch``) or from
    uploaded files; either way the server keeps it as a git repository of its own
    (``sandboxes.templates.starter.repo_path``), which sandboxes' workspaces are
    cloned from and later merged with.
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
    # Steps on top of the sandbox image (sandboxes.templates.dockerfile), and the
    # image its latest successful build made, which new sandboxes get.
    dockerfile = models.TextField(blank=True, default="")
    built_image = models.CharField(max_length=200, blank=True, default="")
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
        db_table = "classroom_template"  # made by the classroom app before it moved here
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class TemplateBuild(models.Model):
    """One build of a template's Dockerfile: a job run by the server in the background
    (sandboxes.templates.builds). Its log is kept here, bounded: the oldest text is
    dropped first and ``log_dropped`` counts it, so readers can follow by offset."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=12, default=new_sandbox_id, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="builds")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    image = models.CharField(max_length=200, blank=True, default="")
    reused = models.BooleanField(default=False)
    step = models.PositiveIntegerField(default=0)
    steps = models.PositiveIntegerField(default=0)
    step_text = models.TextField(blank=True, default="")
    log = models.TextField(blank=True, default="")
    log_dropped = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    failed_step = models.TextField(blank=True, default="")
    last_lines = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Touched while the build runs: a stale one was cut off by a server restart.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"build {self.id} of {self.template_id} ({self.status})"


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
        db_table = "classroom_poolentry"  # made by the classroom app before it moved here
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"pool {self.template_id}: {self.sandbox_id}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for programs. Only its SHA-256 is stored; the token is shown once."""

    PREFIX = "sbx_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.hint}… ({self.user})"

    @classmethod
    def issue(cls, user: object, name: str = "") -> tuple[ApiToken, str]:
        """Create a token; returns the row and the plain token (never stored)."""
        token = cls.PREFIX + secrets.token_urlsafe(30)
        row = cls.objects.create(
            user=user, name=name, key_hash=hash_token(token), hint=token[: len(cls.PREFIX) + 6]
        )
        return row, token


def new_preview_token() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


# Letters and digits nobody confuses when reading a link aloud (no 0/o, 1/l/i).
_SHARE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def new_share_code() -> str:
    """``xxxx-xxxx-xxxx``: 12 characters of 31 (about 59 bits), readable aloud."""
    chars = "".join(secrets.choice(_SHARE_ALPHABET) for _ in range(12))
    return f"{chars[:4]}-{chars[4:8]}-{chars[8:]}"


class ExposedPort(models.Model):
    """A port of a sandbox reachable at its preview URL, for whom its visibility says.

    The token in the preview host and the short share code are what a link carries;
    the visibility decides who, holding it, gets in. Exposing again mints a new token
    and code (old links stop working); deleting the row revokes both at once.
    """

    class Visibility(models.TextChoices):
        PRIVATE = "private"  # the owner and those who may view the sandbox
        COURSE = "course"  # ... and members of a course the sandbox belongs to
        AUTHENTICATED = "authenticated"  # ... and any logged-in user
        PUBLIC = "public"  # anyone with the link

    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="exposed_ports")
    port = models.PositiveIntegerField()
    name = models.CharField(max_length=100, blank=True, default="")
    token = models.CharField(max_length=16, default=new_preview_token)
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    # When a shared level ends (the port is private again); null: it does not.
    expires_at = models.DateTimeField(null=True, blank=True)
    # When sharing was last taken back (set to private); cleared when shared again.
    revoked_at = models.DateTimeField(null=True, blank=True)
    share_code = models.CharField(max_length=14, unique=True, default=new_share_code)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sandbox", "port"], name="unique_exposed_port"),
            models.CheckConstraint(
                condition=models.Q(port__gte=1, port__lte=65535), name="exposed_port_range"
            ),
        ]
        ordering = ["port"]

    def __str__(self) -> str:
        return f"{self.sandbox_id}:{self.port}"
