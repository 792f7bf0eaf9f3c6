"""The API's authentication: the caller (sandboxes/callers.py) or a coded refusal.

Token callers cannot be forged by a browser; session callers must pass Django's
CSRF check on unsafe methods (``callers.api_caller`` decides both).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest

from sandboxes import callers


class ApiAuth:
    """django-ninja auth callable: returns the user, or raises with a clear message."""

    is_async = True

    async def __call__(self, request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
        caller = await callers.api_caller(request)
        if caller.refusal is not None:
            raise caller.refusal
        return caller.user


class AuthedRequest(HttpRequest):
    """What a view of this API receives: ``ApiAuth`` has set ``auth`` to the user.

    Only a type (for annotations); django-ninja passes the real request.
    """

    auth: Any
