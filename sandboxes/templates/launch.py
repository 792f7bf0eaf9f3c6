"""Sandboxes made from templates, and their starter updates.

``POST /sandboxes`` with a template, the warm pool and the classroom all make
sandboxes here: the core's lifecycle plus the template's image, env, limits and
starter code.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib.auth.models import User
from django.dispatch import Signal

from sandboxes import lifecycle
from sandboxes.egress.policy import EgressValue
from sandboxes.errors import BadRequest, Conflict, NotFound, SandboxError
from sandboxes.models import Sandbox, Template
from sandboxes.progress import Report, Step, ignore

from . import starter

# What the dashboard always sent for "no template": still means the plain image.
DEFAULT_TEMPLATE = "default"

# Sent (``sandbox``, ``report``) after a sandbox's starter update was merged; the
# classroom records it on the student's enrolment.
starter_updated = Signal()


def image_of(template: Template) -> str:
    """The image a sandbox of the template gets: the latest build of its Dockerfile
    if it has one (409 until one succeeded), else its chosen image ("": the default)."""
    if template.dockerfile.strip():
        if not template.built_image:
            raise Conflict(
                f"The template {template.name!r} has a Dockerfile that has not been built "
                f"yet: POST /api/v1/templates/{template.id}/build and wait for it to succeed.",
                code="template_not_built",
            )
        return template.built_image
    return template.image


async def create_sandbox_from_template_ex(
    user: User,
    template: Template,
    name: str,
    *,
    env: dict[str, str] | None = None,
    egress: EgressValue = "all",
    sleep_after: int | None = None,
    keep_alive: bool = False,
    report: Report = ignore,
) -> tuple[Sandbox, bool]:
    """Like ``create_sandbox_from_template``; also says whether it was made now, and
    tells ``report`` each stage (container, starter files, setup command).

    An existing sandbox of that name is returned as it is. A new one that cannot be
    given its starter (or whose setup command fails) is removed again, and the error
    raised: the name stays free for another try.
    """
    options = lifecycle.SandboxSettings(
        name=name,
        template=template.id,
        env={**template.env, **(env or {})},
        sleep_after=sleep_after,
        keep_alive=keep_alive,
        egress=egress,
        limits=dict(template.limits),
        image=image_of(template),
    )
    await report(Step("container", f"Starting the sandbox {name}"))
    sandbox, created = await lifecycle.get_or_create_sandbox(user, options)
    if not created:
        return sandbox, False
    try:
        await starter.install(sandbox, template, report)
    except BaseException:
        await report(Step("cleanup", f"Removing the unfinished sandbox {name}"))
        with contextlib.suppress(SandboxError):
            await lifecycle.destroy_sandbox(sandbox)
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
    (see ``starter.update``); ``starter_updated`` tells who keeps track (a course)."""
    if not sandbox.template or sandbox.template == DEFAULT_TEMPLATE:
        raise BadRequest("This sandbox was not made from a template.", code="no_template")
    try:
        template = await Template.objects.aget(pk=sandbox.template)
    except Template.DoesNotExist:
        raise NotFound(
            "The template this sandbox was made from no longer exists.", code="not_found"
        ) from None
    report = await starter.update(sandbox, template)
    await starter_updated.asend(sender=Template, sandbox=sandbox, report=report)
    return report
