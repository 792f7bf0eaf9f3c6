"""Who opens a WebSocket: an API token (programs) or the Django session (browser).

``TokenAuthMiddleware`` sits inside Channels' ``AuthMiddlewareStack`` (which puts
the session's user in ``scope["user"]``) and, when the upgrade carries a token in
``?token=`` or an ``Authorization: Bearer`` header, replaces that user with the
token's owner (sandboxes/callers.py decides). A token that does not verify leaves
an anonymous user and the reason in ``scope["auth_error"]``, so consumers refuse
the upgrade (never accept then close).

Browser upgrades are protected against cross-site WebSocket hijacking by
``WebSocketOriginValidator`` around the whole stack in ide/asgi.py: an upgrade with
an ``Origin`` must come from one of the IDE's own origins, compared exactly (scheme,
host and port); programs send none. Cookies are sent by host and ignore the
port, and SameSite counts every port of 127.0.0.1 (and every sibling preview
subdomain) as the same site, so a host-only comparison, as Channels' validator
does, lets any other local app or preview drive a terminal as the victim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from sandboxes import callers

Scope = Mapping[str, Any]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TokenAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            caller = await callers.scope_caller(scope, session=False)
            if caller.credential == "token":
                named: dict[str, object] = {"user": caller.user, "auth_method": "token"}
                if caller.refusal is not None:
                    named["auth_error"] = caller.refusal.code
                scope = {**scope, **named}
        return await self.inner(scope, receive, send)


def scope_user(scope: Scope) -> Any | None:
    """The authenticated user of a WebSocket scope, or None."""
    if scope.get("auth_error"):
        return None
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


# --------------------------------------------------------------------------- origins


@dataclass(frozen=True)
class WebOrigin:
    """A web origin, normalised: lower-case host without IPv6 brackets, explicit port."""

    scheme: str
    host: str
    port: int


def web_origin(scheme: str, host: str, port: int | None) -> WebOrigin | None:
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return WebOrigin(scheme, host.lower().strip("[]"), port or _DEFAULT_PORTS[scheme])


def parse_origin(value: str) -> WebOrigin | None:
    """An ``Origin`` header (or a base URL) as a WebOrigin; None for ``null``, for a
    scheme other than http(s), and for anything that is not a bare origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or parts.query:
        return None
    if parts.path not in ("", "/") or parts.fragment:
        return None
    return web_origin(parts.scheme, parts.hostname or "", port)


def _http_scheme(scope: Scope) -> str:
    """The scheme the browser used, as Django's ``request.scheme`` sees it: the
    connection's, or ``SECURE_PROXY_SSL_HEADER``'s verdict behind a TLS proxy."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure = proxy
        wanted = header.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        for name, value in scope.get("headers", ()):
            if name.lower() == wanted:
                first = value.decode("latin-1").split(",", 1)[0].strip()
                return "https" if first == secure else "http"
    scheme = scope.get("scheme") or ("ws" if scope.get("type") == "websocket" else "http")
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def _host_header(scope: Scope) -> str:
    return callers.header(scope, b"host").strip()


def _origin_headers(scope: Scope) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"origin"]


def _on_preview_domain(host: str) -> bool:
    domain = settings.PREVIEW_DOMAIN
    return host == domain or host.endswith("." + domain)


def _base_url_origin() -> WebOrigin | None:
    return parse_origin(settings.IDE_BASE_URL) if settings.IDE_BASE_URL else None


def own_origins(scope: Scope, names: Iterable[str] = ()) -> set[WebOrigin]:
    """The origins of a page on the host this request addresses (see host_origins)."""
    return host_origins(_http_scheme(scope), _host_header(scope), names)


def host_origins(scheme: str, host_header: str, names: Iterable[str] = ()) -> set[WebOrigin]:
    """The origins a browser addressing ``host_header`` is on: ``scheme`` (and
    ``IDE_BASE_URL``'s, for a server behind a TLS proxy) with the Host's port, for the
    Host's name and the other ``names`` given."""
    try:
        parts = urlsplit("//" + host_header)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return set()
    schemes = {scheme}
    base = _base_url_origin()
    if base is not None:
        schemes.add(base.scheme)
    found = set()
    for scheme in schemes:
        for name in (host, *names):
            origin = web_origin(scheme, name, port)
            if origin is not None:
                found.add(origin)
    return found


def ide_origins(scope: Scope) -> set[WebOrigin]:
    """The IDE's own origins for this request: ``IDE_BASE_URL``, the exact (wildcard-
    free) ``CSRF_TRUSTED_ORIGINS``, and, when the request's Host is one of
    ``ALLOWED_HOSTS``, that Host and every literal ``ALLOWED_HOSTS`` name on the
    request's scheme and port (``localhost`` and ``127.0.0.1`` are the same IDE).
    Never a host on the preview domain, whatever the settings say: previews run
    the tenants' code."""
    found: set[WebOrigin] = set()
    base = _base_url_origin()
    if base is not None:
        found.add(base)
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        origin = parse_origin(trusted) if "*" not in trusted else None
        if origin is not None:
            found.add(origin)
    host = _host_header(scope)
    name = host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() else host
    if name and validate_host(name.lower(), settings.ALLOWED_HOSTS):
        literal = [h for h in settings.ALLOWED_HOSTS if h and "*" not in h and h[0] != "."]
        found |= own_origins(scope, literal)
    return {origin for origin in found if not _on_preview_domain(origin.host)}


def origin_allowed(scope: Scope, allowed: set[WebOrigin]) -> bool:
    """Whether a browser upgrade's ``Origin`` is exactly one of ``allowed``.

    No ``Origin`` at all is a program (browsers always send one on a WebSocket) and
    passes: it must still authenticate. ``null`` (sandboxed frames, ``data:`` pages),
    several Origin headers, or any other origin are refused.
    """
    values = _origin_headers(scope)
    if not values:
        return True
    if len(values) > 1:
        return False
    origin = parse_origin(values[0])
    return origin is not None and origin in allowed


class WebSocketOriginValidator:
    """Refuse an upgrade whose ``Origin`` is not exactly one of the IDE's own origins
    (``ide_origins``): cross-site WebSocket hijacking with the session cookie.

    Every upgrade that carries an Origin is checked, a token's too: a browser page
    elsewhere has no business with these sockets, and the check does not depend on
    which credential the upgrade turns out to use. Programs send no Origin and
    authenticate with their token (see ``origin_allowed``).
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not origin_allowed(scope, ide_origins(scope)):
            # closed before accept: over Daphne the browser sees HTTP 403
            await send({"type": "websocket.close", "code": 4403})
            return None
        return await self.application(scope, receive, send)
