"""Who is calling: a bearer token (programs) or the Django session (the browser).

Session callers must pass Django's CSRF check on unsafe methods; token callers
cannot be forged by a browser, so they need none.
"""

from __future__ import annotations

import time
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone
from ninja.utils import check_csrf

from sandboxes.errors import Forbidden, Unauthorized
from sandboxes.models import ApiToken, hash_token

_LAST_USED_RESOLUTION = timedelta(minutes=1)


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# A verified token is trusted for this long without asking the database again, so a
# burst of calls costs one lookup. Revoking a token clears it here at once (signal
# below); other server processes notice within the TTL.
TOKEN_CACHE_TTL = 2.0
_token_cache: dict[str, tuple[float, AbstractBaseUser]] = {}


async def user_for_token(token: str) -> AbstractBaseUser | None:
    key_hash = hash_token(token)
    cached = _token_cache.get(key_hash)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    try:
        row = await ApiToken.objects.select_related("user").aget(key_hash=key_hash)
    except ApiToken.DoesNotExist:
        return None
    if not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        await ApiToken.objects.filter(pk=row.pk).aupdate(last_used_at=now)
    if len(_token_cache) > 10_000:
        _token_cache.clear()
    _token_cache[key_hash] = (time.monotonic() + TOKEN_CACHE_TTL, row.user)
    return row.user


@receiver(post_delete, sender=ApiToken)
def _forget_token(sender: type[ApiToken], instance: ApiToken, **kwargs: Any) -> None:
    _token_cache.pop(instance.key_hash, None)


async def session_user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """The session's user, loaded without the (sync) session/auth middleware."""
    if hasattr(request, "auser"):  # served through the page stack
        return await request.auser()
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return AnonymousUser()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    return await aget_user(request)


class ApiAuth:
    """django-ninja auth callable: returns the user, or raises with a clear message."""

    is_async = True

    async def __call__(self, request: HttpRequest) -> AbstractBaseUser:
        header = request.headers.get("Authorization", "")
        if header:
            token = bearer_token(header)
            user = await user_for_token(token) if token else None
            if user is None:
                raise Unauthorized(
                    "The bearer token is not valid (revoked, mistyped, or not a "
                    "'Bearer <token>' header); create a new one on the account page.",
                    code="invalid_token",
                )
            return user
        user = await session_user(request)
        if not user.is_authenticated:
            raise Unauthorized()
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            failure = check_csrf(request)
            if failure is not None:
                raise Forbidden(
                    "CSRF check failed: send the X-CSRFToken header with the csrftoken "
                    "cookie's value, or use a bearer token.",
                    code="csrf_failed",
                )
        return user


class AuthedRequest(HttpRequest):
    """What a view of this API receives: ``ApiAuth`` has set ``auth`` to the user.

    Only a type (for annotations); django-ninja passes the real request.
    """

    auth: Any
