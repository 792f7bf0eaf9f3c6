"""The MCP server of /mcp: the shared tool layer over this server's services.

The ASGI layer (``asgi.py``) authenticates each request and puts the caller in its
scope; every tool call and resource read finds them there (``ctx.request``).
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from django.contrib.auth.models import User
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from sandbox_ide.mcp.layer import Progress, ToolFailure, build_server

from sandboxes import lifecycle, ports

from . import tools

USER = "sandbox_ide.mcp_user"
ORIGIN = "sandbox_ide.mcp_origin"


def _scope(ctx: ServerRequestContext[Any, Any]) -> Any:
    if ctx.request is None:  # every request of /mcp carries its HTTP request
        raise ToolFailure("unauthorized", "This server answers over HTTP only.")
    return ctx.request.scope


def caller(ctx: ServerRequestContext[Any, Any]) -> User:
    user: User = _scope(ctx)[USER]
    return user


class ServerBackend:
    """``sandbox_ide.mcp.layer.Backend`` on the service layer."""

    async def call(
        self,
        ctx: ServerRequestContext[Any, Any],
        name: str,
        args: dict[str, Any],
        progress: Progress,
    ) -> types.CallToolResult:
        origin: ports.Origin = _scope(ctx)[ORIGIN]
        return await tools.run(tools.Call(caller(ctx), origin, progress), name, args)

    async def read(self, ctx: ServerRequestContext[Any, Any], sandbox_id: str, path: str) -> bytes:
        sandbox = await lifecycle.get_sandbox(caller(ctx), sandbox_id, action="view")
        data, _size = await tools.read_bytes(sandbox, path)
        return data

    def failure(self, exc: Exception) -> ToolFailure | None:
        return tools.failure_of(exc)


def mcp_server() -> Server[Any]:
    return build_server(ServerBackend())
