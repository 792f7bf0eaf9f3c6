"""Who is calling: a bearer token (programs) or the Django session (the browser).

Session callers must pass Django's CSRF check on unsafe methods; token callers
cannot be forged by a browser, so they need none.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
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


async def user_for_token(token: str) -> AbstractBaseUser | None:
    try:
        row = await ApiToken.objects.select_related("user").aget(key_hash=hash_token(token))
    except ApiToken.DoesNotExist:
        return None
    if not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        await ApiToken.objects.filter(pk=row.pk).aupdate(last_used_at=now)
    return row.user


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
        user = await request.auser()
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
