"""API v1: ports and preview URLs (docs/api.md, Ports and preview URLs)."""

from __future__ import annotations

from typing import Annotated

from django.http import HttpResponse
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from sandboxes import lifecycle, ports
from sandboxes.policy import may

from .auth import AuthedRequest
from .schemas import ErrorOut, PortOut, StrictIn

router = Router(tags=["ports"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 502: ErrorOut, 503: ErrorOut}


class ExposeIn(StrictIn):
    port: Annotated[int, Field(ge=1, le=65535)]
    name: Annotated[str, StringConstraints(max_length=100)] = ""
    private: bool = False


class PortsOut(Schema):
    exposed: list[PortOut]
    listening: list[int]


def request_origin(request: AuthedRequest) -> ports.Origin:
    """Preview URLs use the scheme and port the caller reached this server on."""
    try:
        port: int | None = int(request.get_port())
    except (TypeError, ValueError):
        port = None
    return ports.Origin(request.scheme or "http", port)


@router.post("/sandboxes/{sandbox_id}/ports", response={201: PortOut, **ERRORS})
async def expose_port(
    request: AuthedRequest, sandbox_id: str, payload: ExposeIn
) -> tuple[int, dict[str, object]]:
    """Expose a port with a new token; exposing it again replaces the token."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    row, _created = await ports.expose(sandbox, payload.port, payload.name, payload.private)
    await lifecycle.touch(sandbox)
    return 201, ports.port_out(row, request_origin(request))


@router.get("/sandboxes/{sandbox_id}/ports", response={200: PortsOut, **ERRORS})
async def list_ports(request: AuthedRequest, sandbox_id: str) -> dict[str, object]:
    """Also for those who may look at the sandbox (a course's teacher, a class it is
    shared with): they see its previews; exposing and unexposing stay the owner's."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    origin = request_origin(request)
    exposed = [ports.port_out(p, origin) for p in await ports.exposed_ports(sandbox)]
    # A viewer's page asks every few seconds: that neither wakes nor keeps awake.
    wake = await may(request.auth, "use", sandbox)
    return {"exposed": exposed, "listening": await ports.listening_ports(sandbox, wake=wake)}


@router.delete("/sandboxes/{sandbox_id}/ports/{port}", response={204: None, **ERRORS})
async def unexpose_port(request: AuthedRequest, sandbox_id: str, port: int) -> HttpResponse:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    await ports.unexpose(sandbox, port)
    return HttpResponse(status=204)
