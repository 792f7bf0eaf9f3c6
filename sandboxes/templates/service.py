"""Templates: create, change and delete them.

A template is used by its owner (and staff) through the API and the dashboard;
apps built on the core (the classroom) use it for others (they check who may).
Every value is validated here, so every caller gets the same clear errors.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, models
from django.db.models import ProtectedError

from sandboxes.envpolicy import refuse_reserved
from sandboxes.errors import BadRequest, Conflict, NotFound
from sandboxes.images import image_tag
from sandboxes.models import NAME_PATTERN, Template

from . import builds, dockerfile, pool, starter
from .pool import MAX_WARM_POOL

MAX_OPEN_FILES = 20
MAX_DESCRIPTION = 4000
MAX_SETUP = 16 * 1024
MAX_ENV = 256
MIN_MEMORY_MB = 64
MIN_CPUS = 0.05
FIELDS = (
    "name",
    "description",
    "image",
    "repo_url",
    "repo_branch",
    "setup_command",
    "dockerfile",
    "env",
    "limits",
    "open_files",
    "preview_port",
    "warm_pool",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _bad(message: str, code: str) -> BadRequest:
    return BadRequest(message, code=code)


# ------------------------------------------------------------------ validation


def server_limits() -> dict[str, float]:
    """The most a template may ask for: the server's own limits (disk 0: none)."""
    return {
        "memory_mb": int(settings.SANDBOX_MEMORY_LIMIT) // (1024 * 1024),
        "cpus": float(settings.SANDBOX_CPU_LIMIT),
        "disk_mb": int(getattr(settings, "SANDBOX_DISK_QUOTA", 0) or 0) // (1024 * 1024),
    }


def allowed_images() -> list[str]:
    return [image_tag(), *getattr(settings, "TEMPLATE_IMAGES", [])]


def _number(value: Any, name: str, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"limits.{name} must be a number.", "invalid_limits")
    if not math.isfinite(value) or (integer and value != int(value)):
        raise _bad(f"limits.{name} must be a whole number.", "invalid_limits")
    return int(value) if integer else float(value)


def validate_limits(limits: Any) -> dict[str, Any]:
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise _bad("limits must be an object {memory_mb, cpus, disk_mb}.", "invalid_limits")
    unknown = set(limits) - {"memory_mb", "cpus", "disk_mb"}
    if unknown:
        raise _bad(
            f"limits has unknown keys {sorted(unknown)}; use memory_mb, cpus, disk_mb.",
            "invalid_limits",
        )
    caps = server_limits()
    out: dict[str, Any] = {}
    for name, minimum, integer in (
        ("memory_mb", MIN_MEMORY_MB, True),
        ("cpus", MIN_CPUS, False),
        ("disk_mb", 1, True),
    ):
        if limits.get(name) is None:
            continue
        value = _number(limits[name], name, integer)
        cap = caps[name]
        if value < minimum:
            raise _bad(f"limits.{name} must be at least {minimum:g}.", "invalid_limits")
        if cap and value > cap:
            raise _bad(
                f"limits.{name} may be at most {cap:g}, this server's own limit.",
                "invalid_limits",
            )
        out[name] = value
    return out


def validate_env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise _bad("env must be an object of strings.", "invalid_env")
    if len(env) > MAX_ENV:
        raise _bad(f"env may hold at most {MAX_ENV} variables.", "invalid_env")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise _bad(f"{key!r} is not a valid environment variable name.", "invalid_env")
        if not isinstance(value, str) or "\0" in value:
            raise _bad(f"env.{key} must be a string without NUL bytes.", "invalid_env")
    refuse_reserved(env)
    return dict(env)


def validate_open_files(paths: Any) -> list[str]:
    if paths is None:
        return []
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _bad("open_files must be a list of relative file paths.", "invalid_open_files")
    if len(paths) > MAX_OPEN_FILES:
        raise _bad(f"open_files may list at most {MAX_OPEN_FILES} files.", "invalid_open_files")
    out = []
    for path in paths:
        try:
            out.append(starter.check_file_path(path))
        except BadRequest as exc:
            raise _bad(f"open_files: {exc.message}", "invalid_open_files") from None
    return list(dict.fromkeys(out))


def _validate(data: dict[str, Any], template: Template | None) -> dict[str, Any]:
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise _bad(f"Unknown template fields {sorted(unknown)}.", "bad_request")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "name":
            if not isinstance(value, str) or not re.match(NAME_PATTERN, value):
                raise _bad(
                    "name must be 1-39 lowercase letters, digits or '-' "
                    "(starting with a letter or digit).",
                    "invalid_name",
                )
        elif key in ("description", "setup_command", "image", "repo_url", "repo_branch"):
            value = "" if value is None else value
            if not isinstance(value, str) or "\0" in value:
                raise _bad(f"{key} must be a string.", f"invalid_{key}")
            limit = {"description": MAX_DESCRIPTION, "setup_command": MAX_SETUP}.get(key, 500)
            if len(value) > limit:
                raise _bad(f"{key} may be at most {limit} characters.", f"invalid_{key}")
            if key in ("image", "repo_url", "repo_branch"):
                value = value.strip()
            if key == "image" and value and value not in allowed_images():
                raise _bad(
                    f"The image {value!r} is not offered by this server; leave it empty for "
                    "the default (TEMPLATE_IMAGES lists the others).",
                    "invalid_image",
                )
            if key == "repo_branch" and value:
                starter.check_branch(value)
        elif key == "dockerfile":
            value = "" if value is None else value
            if not isinstance(value, str):
                raise _bad("dockerfile must be a string.", "invalid_dockerfile")
            if value.strip():
                dockerfile.validate(value)
        elif key == "env":
            value = validate_env(value)
        elif key == "limits":
            value = validate_limits(value)
        elif key == "open_files":
            value = validate_open_files(value)
        elif key == "preview_port":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535
            ):
                raise _bad("preview_port must be a port number 1-65535 (or null).", "invalid_port")
        elif key == "warm_pool":
            if value is None:
                value = int(getattr(settings, "CLASSROOM_WARM_POOL", 0))
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _bad("warm_pool must be a whole number, 0 or more.", "invalid_warm_pool")
            if value > MAX_WARM_POOL:
                raise _bad(f"warm_pool may be at most {MAX_WARM_POOL}.", "invalid_warm_pool")
        out[key] = value
    image = out.get("image", template.image if template else "")
    if image and (out.get("dockerfile", template.dockerfile if template else "") or "").strip():
        raise _bad(
            "A template with a Dockerfile builds on the sandbox image: leave image empty "
            "(or remove the Dockerfile to use that image).",
            "invalid_image",
        )
    return out


# ------------------------------------------------------------------ queries


async def list_templates(user: User) -> list[Template]:
    return [t async for t in Template.objects.filter(owner=user)]


async def get_template(user: User, template_id: str) -> Template:
    """A template the user may use (theirs; staff: any); others' look like missing ones."""
    try:
        template = await Template.objects.aget(pk=template_id)
    except (Template.DoesNotExist, ValueError):
        template = None
    if template is None or (template.owner_id != user.pk and not getattr(user, "is_staff", False)):
        raise NotFound(f"No template with id {template_id!r}.", code="not_found")
    return template


# ------------------------------------------------------------------ changes


async def create_template(user: User, data: dict[str, Any]) -> Template:
    """A new template; with a ``repo_url`` its repository is fetched at once (a bad
    URL, branch or credentials: 400 with git's reason, and no template is made)."""
    values = _validate(data, None)
    if "name" not in values:
        raise _bad("name is required.", "invalid_name")
    template = Template(owner=user, **values)
    try:
        await template.asave(force_insert=True)
    except IntegrityError:
        raise Conflict(
            f"You already have a template named {values['name']!r}.", code="already_exists"
        ) from None
    if template.repo_url:
        try:
            await starter.import_repo(template)
        except BaseException:
            await asyncio.to_thread(starter.delete_repo, template)
            await template.adelete()
            raise
    return template


async def update_template(template: Template, data: dict[str, Any]) -> Template:
    """Change fields; a changed ``repo_url``/``repo_branch`` is fetched before saving."""
    values = _validate(data, template)
    refetch = any(
        key in values and values[key] != getattr(template, key)
        for key in ("repo_url", "repo_branch")
    )
    for key, value in values.items():
        setattr(template, key, value)
    # Only what changed is saved: a build ending meanwhile records its image itself.
    fields = [*values, "updated_at"]
    replaced = template.built_image
    if replaced and not template.dockerfile.strip():
        template.built_image = ""
        fields.append("built_image")
    if refetch and template.repo_url:
        await starter.import_repo(template)
    try:
        await template.asave(update_fields=fields)
    except IntegrityError:
        await template.arefresh_from_db()
        raise Conflict(
            f"You already have a template named {values.get('name')!r}.", code="already_exists"
        ) from None
    if replaced and not template.built_image:
        await asyncio.to_thread(builds.forget_image, replaced)
    return template


async def _user_of(template: Template) -> str | None:
    """What protects the template from deletion (a course, say), if anything does:
    the verbose name of the first model with a PROTECT reference to it."""
    for relation in Template._meta.related_objects:
        if relation.on_delete is not models.PROTECT:
            continue
        related = relation.related_model
        if await related._default_manager.filter(**{relation.field.name: template}).aexists():
            return str(related._meta.verbose_name)
    return None


async def delete_template(template: Template) -> None:
    """Delete the template, its pooled sandboxes and its starter repository; refused
    (409) while something built on it (a course) still uses it."""
    user = await _user_of(template)
    if user is not None:
        raise Conflict(
            f"A {user} uses this template: delete the {user} first.", code="template_in_use"
        )
    await pool.drain(template)
    try:
        await template.adelete()
    except ProtectedError:
        raise Conflict(
            "Something uses this template: delete that first.", code="template_in_use"
        ) from None
    await asyncio.to_thread(starter.delete_repo, template)
    await asyncio.to_thread(builds.forget_image, template.built_image)
