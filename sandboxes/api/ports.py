"""API v1: ports, preview URLs and their sharing (docs/api.md, Ports and preview URLs)."""

from __future__ import annotations

import io
from typing import Annotated

import segno
from django.http import HttpResponse
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from sandboxes import lifecycle, ports
from sandboxes.errors import BadRequest, NotFound
from sandboxes.policy import may
from sandboxes.preview.hosts import split_host

from .auth import AuthedRequest
from .schemas import ErrorOut, PortOut, StrictIn, Visibility

router = Router(tags=["ports"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 502: ErrorOut, 503: ErrorOut}
ExpiresIn = Annotated[int, Field(ge=1, le=ports.MAX_EXPIRES_IN)]


class ExposeIn(StrictIn):
    port: Annotated[int, Field(ge=1, le=65535)]
    name: Annotated[str, StringConstraints(max_length=100)] = ""
    # Absent (and no ``private``): public, as this route always did for programs.
    visibility: Visibility | None = None
    private: bool | None = None
    expires_in: ExpiresIn | None = None


class ShareIn(StrictIn):
    visibility: Visibility | None = None
    expires_in: ExpiresIn | None = None


class PortsOut(Schema):
    exposed: list[PortOut]
    listening: list[int]


def request_origin(request: AuthedRequest) -> ports.Origin:
    """Preview URLs use the scheme the caller reached us by and the port of the Host it
    asked for (already checked against ALLOWED_HOSTS): behind a proxy that keeps Host,
    that is the public port, not the one this process listens on, so any number of
    processes on any ports hand out the same URLs. Preview hosts read it the same way."""
    _, port = split_host(request.get_host())
    return ports.Origin(request.scheme or "http", port)


def expose_level(payload: ExposeIn) -> str:
    """``visibility``, or what the older ``private`` flag means; public if neither."""
    if payload.private is None:
        return payload.visibility or ports.Visibility.PUBLIC
    implied = ports.Visibility.PRIVATE if payload.private else ports.Visibility.PUBLIC
    if payload.visibility is not None and payload.private != (payload.visibility != "public"):
        raise BadRequest(
            f"private={str(payload.private).lower()} contradicts visibility "
            f"{payload.visibility!r}: send visibility alone.",
            code="invalid_visibility",
        )
    return payload.visibility or implied


@router.post("/sandboxes/{sandbox_id}/ports", response={201: PortOut, **ERRORS})
async def expose_port(
    request: AuthedRequest, sandbox_id: str, payload: ExposeIn
) -> tuple[int, dict[str, object]]:
    """Expose a port with a new token and share link; exposing it again replaces both."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    row, _created = await ports.expose(
        sandbox, payload.port, payload.name, expose_level(payload), payload.expires_in
    )
    await lifecycle.touch(sandbox)
    return 201, ports.port_out(row, request_origin(request))


@router.patch("/sandboxes/{sandbox_id}/ports/{port}", response={200: PortOut, **ERRORS})
async def share_port(
    request: AuthedRequest, sandbox_id: str, port: int, payload: ShareIn
) -> dict[str, object]:
    """Change who may open the port and for how long; private revokes at once."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    given = payload.model_fields_set
    if not given:
        raise BadRequest("Send visibility, expires_in or both.", code="bad_request")
    row = await ports.share(
        sandbox,
        port,
        payload.visibility,
        payload.expires_in,
        keep_expiry="expires_in" not in given,
    )
    return ports.port_out(row, request_origin(request))


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


@router.get(
    "/sandboxes/{sandbox_id}/ports/{port}/qr",
    response={200: None, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "The share link as a QR code.",
                "content": {"image/svg+xml": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def port_qr(request: AuthedRequest, sandbox_id: str, port: int) -> HttpResponse:
    """The share link as a QR code (SVG), for phones in the same room."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    row = await ports.find_exposed(sandbox.id, ports.validate_port(port))
    if row is None:
        raise NotFound(f"Port {port} is not exposed.", code="not_found")
    qr = segno.make(ports.share_url(row, request_origin(request)), error="m")
    svg = io.BytesIO()
    qr.save(svg, kind="svg", scale=4, border=2, dark="#000", light="#fff", xmldecl=False)
    response = HttpResponse(svg.getvalue(), content_type="image/svg+xml")
    response["Cache-Control"] = "no-store"
    return response


@router.delete("/sandboxes/{sandbox_id}/ports/{port}", response={204: None, **ERRORS})
async def unexpose_port(request: AuthedRequest, sandbox_id: str, port: int) -> HttpResponse:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    await ports.unexpose(sandbox, port)
    return HttpResponse(status=204)
