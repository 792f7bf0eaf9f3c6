"""API v1: one NinjaAPI with a router per area of docs/api.md.

Apps built on the core add their routers at ``ready()`` (the classroom's courses).
"""

from __future__ import annotations

from . import (
    builds,
    code,
    commands,
    files,
    git,
    ports,
    processes,
    sandboxes,
    snapshots,
    templates,
    terminals,
)
from .auth import ApiAuth
from .errors import install_handlers
from .openapi import SandboxAPI

api = SandboxAPI(
    title="Sandbox IDE API",
    version="1",
    description="Isolated sandboxes for people and programs: commands, files, git, "
    "processes, terminals, a code interpreter and preview URLs.",
    auth=ApiAuth(),
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url="/docs",
)
install_handlers(api)
api.add_router("", sandboxes.router)
api.add_router("", commands.router)
api.add_router("", snapshots.router)
for area in (files, processes, git, terminals, ports, code, templates, builds):
    api.add_router("", area.router)
