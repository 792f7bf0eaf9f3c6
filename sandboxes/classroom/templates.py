"""Templates (issue 10): create, change and delete them, and make sandboxes from them.

A template is used by its owner (and staff) through the API and the dashboard; the
course code calls ``create_sandbox_from_template`` directly for students (it checks
enrolment itself). Every value is validated here, so every caller gets the same
clear errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.db.models import ProtectedError

from sandboxes import services
from sandboxes.envpolicy import refuse_reserved
from sandboxes.errors import BadRequest, Conflict, NotFound, SandboxError
from sandboxes.images import image_tag
from sandboxes.models import NAME_PATTERN, Sandbox

from . import starter
from .models import Enrollment, Template

# What the dashboard always sent for "no template": still means the plain image.
DEFAULT_TEMPLATE = "default"
MAX_WARM_POOL = 50
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
    if refetch and template.repo_url:
        await starter.import_repo(template)
    try:
        await template.asave()
    except IntegrityError:
        await template.arefresh_from_db()
        raise Conflict(
            f"You already have a template named {values.get('name')!r}.", code="already_exists"
        ) from None
    return template


async def delete_template(template: Template) -> None:
    if await template.courses.aexists():
        raise Conflict(
            "A course uses this template: delete the course first.", code="template_in_use"
        )
    from sandboxes.classroom import pool

    await pool.drain(template)
    try:
        await template.adelete()
    except ProtectedError:
        raise Conflict(
            "A course uses this template: delete the course first.", code="template_in_use"
        ) from None
    await asyncio.to_thread(starter.delete_repo, template)


# ------------------------------------------------------------------ sandboxes


async def create_sandbox_from_template_ex(
    user: User,
    template: Template,
    name: str,
    *,
    env: dict[str, str] | None = None,
    egress: str = "all",
    sleep_after: int | None = None,
    keep_alive: bool = False,
) -> tuple[Sandbox, bool]:
    """Like ``create_sandbox_from_template``; also says whether it was made now.

    An existing sandbox of that name is returned as it is. A new one that cannot be
    given its starter (or whose setup command fails) is removed again, and the error
    raised: the name stays free for another try.
    """
    options = services.SandboxSettings(
        name=name,
        template=template.id,
        env={**template.env, **(env or {})},
        sleep_after=sleep_after,
        keep_alive=keep_alive,
        egress=egress,
        limits=dict(template.limits),
        image=template.image,
    )
    sandbox, created = await services.get_or_create_sandbox(user, options)
    if not created:
        return sandbox, False
    try:
        await starter.install(sandbox, template)
    except BaseException:
        with contextlib.suppress(SandboxError):
            await services.destroy_sandbox(sandbox)
        raise
    return sandbox, True


async def create_sandbox_from_template(
    user: User, template: Template, name: str, **overrides: Any
) -> Sandbox:
    """A running sandbox for ``user`` named ``name`` made from ``template``: its
    image, env (``overrides["env"]`` on top), limits, and the starter installed in
    /workspace with the setup command run. ``overrides``: env, egress, sleep_after,
    keep_alive. No permission check: callers decide who may use the template."""
    sandbox, _ = await create_sandbox_from_template_ex(user, template, name, **overrides)
    return sandbox


async def template_of(sandbox: Sandbox) -> Template | None:
    """The template a sandbox was made from, if it was and the template still exists."""
    if not sandbox.template or sandbox.template == DEFAULT_TEMPLATE:
        return None
    return await Template.objects.filter(pk=sandbox.template).afirst()


async def update_sandbox_starter(sandbox: Sandbox) -> dict[str, Any]:
    """Merge the newest starter of the sandbox's own template into its workspace
    (see ``starter.update``); a course enrolment records how it went."""
    if not sandbox.template or sandbox.template == DEFAULT_TEMPLATE:
        raise BadRequest("This sandbox was not made from a template.", code="no_template")
    try:
        template = await Template.objects.aget(pk=sandbox.template)
    except Template.DoesNotExist:
        raise NotFound(
            "The template this sandbox was made from no longer exists.", code="not_found"
        ) from None
    report = await starter.update(sandbox, template)
    await Enrollment.objects.filter(sandbox=sandbox).aupdate(
        starter_head=report.get("head", ""), last_update=report
    )
    return report
