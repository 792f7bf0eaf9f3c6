"""Preview host names, ``{port}-{id}-{token}.{PREVIEW_DOMAIN}``, and the IDE's
origin that a preview sends the browser to for signing in."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from django.conf import settings

from sandboxes import ports


@dataclass(frozen=True)
class Target:
    """What a preview host name says: which sandbox, which port, and the token."""

    sandbox_id: str
    port: int
    token: str


@functools.cache
def _host_pattern(domain: str) -> re.Pattern[str]:
    return re.compile(
        r"^(?P<port>[0-9]{1,5})-(?P<id>[a-z0-9]{12})-(?P<token>[a-z0-9]{16})\."
        + re.escape(domain)
        + r"$"
    )


def split_host(host: str) -> tuple[str, int | None]:
    """``name[:port]`` → (lower-case name, port)."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and (name.endswith("]") or ":" not in name):
        return name, int(port)
    return host, None


def parse_preview_host(name: str) -> Target | None:
    match = _host_pattern(settings.PREVIEW_DOMAIN).match(name)
    if match is None:
        return None
    port = int(match["port"])
    if not 1 <= port <= 65535:
        return None
    return Target(match["id"], port, match["token"])


def is_preview_domain(name: str) -> bool:
    domain = settings.PREVIEW_DOMAIN
    return name == domain or name.endswith("." + domain)


def ide_origin(scheme: str, preview_port: int | None) -> str:
    """The IDE's origin as seen from a preview reached on ``scheme`` and port."""
    return ports.ide_base(ports.Origin(scheme, preview_port))
