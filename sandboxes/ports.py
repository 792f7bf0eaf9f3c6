"""Exposed ports, their preview URLs and who may open them (docs/api.md, Ports and
preview URLs).

Exposing a port stores a fresh 16-character token; the preview URL
``{port}-{id}-{token}.{PREVIEW_DOMAIN}`` carries it, and so does a short share link
(``/p/{code}`` on the IDE's origin, which leads there). Who may open it is the
port's visibility: ``private`` (the owner and those who may view the sandbox),
``course``, ``authenticated`` or ``public``; a shared level may expire, and going
back to private revokes it. Exposing again replaces token and code (old links stop
working), unexposing deletes the row. The preview proxy reads the row on every
request, so every change and every expiry takes effect at once in every server
process: nothing about visibility is kept in a process's memory.
"""

from __future__ import annotations

import contextvars
import datetime
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from container.agent.protocol import ListeningPorts, PortList
from sandboxes import agentconn
from sandboxes.agent.client import expect
from sandboxes.coordination import coordinator
from sandboxes.errors import AgentError, AgentProtocolError, BadRequest, NotFound
from sandboxes.models import ExposedPort, Sandbox, new_preview_token, new_share_code

# Scheme and port of the request being served on the IDE's own host, set by the
# preview layer (sandboxes/preview/) for every request it passes on, so preview
# URLs in sandbox objects point at the server the caller is talking to.
request_origin: contextvars.ContextVar[tuple[str, int | None]] = contextvars.ContextVar(
    "request_origin"
)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str = "http"
    port: int | None = None

    @classmethod
    def current(cls) -> Origin:
        value = request_origin.get(None)
        if value is not None:
            return cls(*value)
        base = getattr(settings, "IDE_BASE_URL", "")
        if base:
            parts = urlsplit(base)
            return cls(parts.scheme or "http", parts.port)
        return cls()

    def netloc(self, host: str) -> str:
        if self.port is None or _DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return f"{host}:{self.port}"


Visibility = ExposedPort.Visibility
LEVELS: Final = tuple(Visibility.values)
# Who can open a link at each level, in one sentence (the IDE's pane and the CLI).
AUDIENCE: Final = {
    Visibility.PRIVATE: "Only the owner and people who may look at this sandbox "
    "(such as a course's teacher) can open it.",
    Visibility.COURSE: "Members of a course this sandbox belongs to can open it, once logged in.",
    Visibility.AUTHENTICATED: "Anyone with an account on this server can open it, once logged in.",
    Visibility.PUBLIC: "Anyone with the link can open it, without logging in.",
}
MAX_EXPIRES_IN: Final = 365 * 24 * 3600
SHARE_PATH: Final = "/p/"


def ide_base(origin: Origin | None = None) -> str:
    """The IDE's origin (``IDE_BASE_URL``, else ``localhost`` on the caller's scheme
    and port), where sign-ins and share links live."""
    if settings.IDE_BASE_URL:
        return str(settings.IDE_BASE_URL)
    origin = origin or Origin.current()
    return f"{origin.scheme}://" + origin.netloc("localhost")


def preview_host(sandbox_id: str, port: int, token: str) -> str:
    return f"{port}-{sandbox_id}-{token}.{settings.PREVIEW_DOMAIN}"


def preview_url(exposed: ExposedPort, origin: Origin | None = None) -> str:
    origin = origin or Origin.current()
    host = preview_host(exposed.sandbox_id, exposed.port, exposed.token)
    return f"{origin.scheme}://{origin.netloc(host)}/"


def share_url(exposed: ExposedPort, origin: Origin | None = None) -> str:
    return ide_base(origin) + SHARE_PATH + exposed.share_code


def expired(exposed: ExposedPort, now: datetime.datetime | None = None) -> bool:
    return exposed.expires_at is not None and exposed.expires_at <= (now or timezone.now())


def visibility(exposed: ExposedPort, now: datetime.datetime | None = None) -> str:
    """The level in force: a shared level that has expired is private again."""
    return Visibility.PRIVATE if expired(exposed, now) else exposed.visibility


def ended(exposed: ExposedPort, now: datetime.datetime | None = None) -> str | None:
    """Why a link that was shared no longer is: ``"expired"``, ``"revoked"`` or None."""
    if exposed.visibility != Visibility.PRIVATE and expired(exposed, now):
        return "expired"
    if exposed.visibility == Visibility.PRIVATE and exposed.revoked_at is not None:
        return "revoked"
    return None


def port_out(exposed: ExposedPort, origin: Origin | None = None) -> dict[str, Any]:
    now = timezone.now()
    level = visibility(exposed, now)
    return {
        "port": exposed.port,
        "name": exposed.name,
        "url": preview_url(exposed, origin),
        "token": exposed.token,
        "visibility": level,
        "audience": AUDIENCE[Visibility(level)],
        "expires_at": exposed.expires_at,
        "ended": ended(exposed, now),
        "share_url": share_url(exposed, origin),
        "private": level != Visibility.PUBLIC,
        "created_at": exposed.created_at,
    }


def exposed_out(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The ``ports`` field of a sandbox object: what ``with_exposed_ports`` loaded."""
    return [port_out(p) for p in getattr(sandbox, "exposed_list", [])]


def validate_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise BadRequest("port must be a whole number from 1 to 65535.", code="invalid_port")
    return port


def validate_level(level: object) -> str:
    if level not in LEVELS:
        raise BadRequest(
            f"visibility must be one of: {', '.join(LEVELS)}.", code="invalid_visibility"
        )
    return str(level)


def _expiry(level: str, expires_in: int | None) -> datetime.datetime | None:
    """When a share of ``level`` for ``expires_in`` seconds ends (None: never)."""
    if expires_in is None:
        return None
    if level == Visibility.PRIVATE:
        raise BadRequest(
            "expires_in applies to a shared link: give a visibility other than private.",
            code="invalid_expiry",
        )
    if isinstance(expires_in, bool) or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise BadRequest(
            f"expires_in must be a whole number of seconds from 1 to {MAX_EXPIRES_IN}, or null.",
            code="invalid_expiry",
        )
    return timezone.now() + datetime.timedelta(seconds=expires_in)


async def expose(
    sandbox: Sandbox,
    port: int,
    name: str = "",
    level: str = Visibility.PUBLIC,
    expires_in: int | None = None,
) -> tuple[ExposedPort, bool]:
    """Expose ``port`` with a new token and share code at ``level``; returns the row
    and whether it is new."""
    validate_port(port)
    level = validate_level(level)
    values = {
        "name": name,
        "visibility": level,
        "expires_at": _expiry(level, expires_in),
        "revoked_at": None,
        "token": new_preview_token(),
        "share_code": new_share_code(),
    }
    for _ in range(3):
        try:
            made = await ExposedPort.objects.aupdate_or_create(
                sandbox=sandbox, port=port, defaults=values
            )
            forget(sandbox.id, port)
            return made
        except IntegrityError:  # a concurrent expose inserted it first: update it
            values["share_code"] = new_share_code()
    raise AgentError("Could not expose the port; try again.")  # pragma: no cover


async def share(
    sandbox: Sandbox,
    port: int,
    level: str | None,
    expires_in: int | None = None,
    keep_expiry: bool = False,
) -> ExposedPort:
    """Change who may open an exposed port (``level``; None keeps it) and for how
    long (``expires_in`` seconds, None: no end; ``keep_expiry``: the current end
    stays while the level does). Going back to private revokes the link at once."""
    row = await ExposedPort.objects.filter(sandbox=sandbox, port=validate_port(port)).afirst()
    if row is None:
        raise NotFound(f"Port {port} is not exposed.", code="not_found")
    now = timezone.now()
    before = visibility(row, now)
    level = validate_level(level) if level is not None else before
    if keep_expiry:
        expires_at = row.expires_at if level == before != Visibility.PRIVATE else None
    else:
        expires_at = _expiry(level, expires_in)
    if level != Visibility.PRIVATE:
        row.revoked_at = None
    elif before != Visibility.PRIVATE:
        row.revoked_at = now
    row.visibility, row.expires_at = level, expires_at
    await row.asave(update_fields=["visibility", "expires_at", "revoked_at"])
    forget(sandbox.id, row.port)
    return row


async def exposed_ports(sandbox: Sandbox) -> list[ExposedPort]:
    return [p async for p in ExposedPort.objects.filter(sandbox=sandbox)]


async def listening_ports(sandbox: Sandbox, *, wake: bool = True) -> list[int]:
    """The TCP ports listened on in the sandbox: distinct port numbers (1-65535),
    as the agent must send them (``PortList.ports`` is type-checked on decoding).

    ``wake=False`` (a viewer's page polling): none while the sandbox sleeps, and
    asking is not activity that keeps it awake.
    """
    if wake:
        reply = await agentconn.call_agent(sandbox, ListeningPorts())
    elif (peeked := await agentconn.peek_agent(sandbox, ListeningPorts())) is not None:
        reply = peeked
    else:
        return []
    ports = expect(reply, PortList).ports
    if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != len(ports):
        raise AgentProtocolError("it listed ports that are not distinct numbers 1-65535.")
    return ports


async def unexpose(sandbox: Sandbox, port: int) -> None:
    deleted, _ = await ExposedPort.objects.filter(sandbox=sandbox, port=port).adelete()
    forget(sandbox.id, port)
    if not deleted:
        raise NotFound(f"Port {port} is not exposed.", code="not_found")


async def find_exposed(sandbox_id: str, port: int) -> ExposedPort | None:
    """The exposure a preview host names, with its sandbox (one query)."""
    return (
        await ExposedPort.objects.select_related("sandbox")
        .filter(sandbox_id=sandbox_id, port=port)
        .afirst()
    )


# What the preview proxy looked up lately, for RECENT_SECONDS: a page load's dozens of
# requests then cost one query, not one each (a query per request cut small-response
# throughput to a quarter). An entry is trusted only under the shared generation it
# was made with (``sandboxes.coordination``): expose, share or unexpose in any server
# process bumps it, so a revoke holds in every process at once. Expiry is judged at
# each use from the row.
RECENT_SECONDS: Final = 0.5
EXPOSURES: Final = "preview-exposures"
_recent: dict[tuple[str, int], tuple[float, int, ExposedPort]] = {}
_RECENT_MAX = 10_000


async def find_exposed_recent(sandbox_id: str, port: int) -> ExposedPort | None:
    key = (sandbox_id, port)
    now = time.monotonic()
    generation = await coordinator().generation(EXPOSURES)
    hit = _recent.get(key)
    if hit is not None and hit[0] > now and hit[1] == generation:
        return hit[2]
    row = await find_exposed(sandbox_id, port)
    if row is None or generation is None:
        _recent.pop(key, None)
    else:
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[key] = (now + RECENT_SECONDS, generation, row)
    return row


def forget(sandbox_id: str, port: int) -> None:
    _recent.pop((sandbox_id, port), None)
    coordinator().bump(EXPOSURES)


async def find_shared(code: str) -> ExposedPort | None:
    """The exposure a short share link names."""
    return await ExposedPort.objects.select_related("sandbox").filter(share_code=code).afirst()
