"""The classroom app: courses built on the core, which it extends by registration."""

from __future__ import annotations

from django.apps import AppConfig


class ClassroomConfig(AppConfig):
    name = "sandboxes.classroom"
    label = "classroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug the classroom into the core: who may look at a student's sandbox, whom
        a preview shared with a course admits, when a template's warm pool is wanted,
        which sign-ups an invite allows, its API routes (courses and tutorials), and
        where a student's starter updates are recorded."""
        from sandboxes import policy
        from sandboxes.api import api
        from sandboxes.templates import pool
        from sandboxes.templates.launch import starter_updated

        from . import access, hooks, tutorial_api
        from . import api as classroom_api

        policy.register(access.rule)
        policy.register_membership(access.in_course)
        policy.register_invitation(hooks.invitation_valid)
        pool.register_demand(hooks.open_for_joining)
        starter_updated.connect(hooks.record_starter_update, dispatch_uid="classroom")
        api.add_router("", classroom_api.router)
        api.add_router("", tutorial_api.router)
