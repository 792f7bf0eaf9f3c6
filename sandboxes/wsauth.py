"""Who opens a WebSocket: an API token (programs) or the Django session (browser).

``TokenAuthMiddleware`` sits inside Channels' ``AuthMiddlewareStack`` (which puts
the session's user in ``scope["user"]``) and, when the upgrade carries a token in
``?token=`` or an ``Authorization: Bearer`` header, replaces that user with the
token's owner. A token that does not verify leaves an anonymous user and the reason
in ``scope["auth_error"]``, so consumers refuse the upgrade (never accept then
close). Browser upgrades are protected against cross-site hijacking by the Origin
check (``WebSocketOriginValidator``) around the whole stack in ide/asgi.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from sandboxes.api.auth import bearer_token, user_for_token


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The token a WebSocket upgrade carries, "" for a malformed one, None if none."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bearer_token(value.decode("latin-1")) or ""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query:
        return query["token"][-1].strip()
    return None


class TokenAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            token = token_from_scope(scope)
            if token is not None:
                user = await user_for_token(token) if token else None
                scope = {**scope, "user": user or AnonymousUser(), "auth_method": "token"}
                if user is None:
                    scope["auth_error"] = "invalid_token"
        return await self.inner(scope, receive, send)


def scope_user(scope: dict[str, Any]) -> Any | None:
    """The authenticated user of a WebSocket scope, or None."""
    if scope.get("auth_error"):
        return None
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


class _BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin: Any) -> bool:
        # Browsers always send Origin on a WebSocket upgrade, so a missing one is a
        # program (which must still authenticate); Channels' validator would refuse it.
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def WebSocketOriginValidator(application: Any) -> Any:  # noqa: N802 - like Channels'
    """Refuse upgrades whose ``Origin`` is not one of ``ALLOWED_HOSTS`` (cross-site
    WebSocket hijacking); upgrades without an Origin (programs) pass."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return _BrowserOriginValidator(application, allowed)
