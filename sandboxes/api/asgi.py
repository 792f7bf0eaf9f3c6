"""The ASGI handler for /api/: Django without the page middleware.

Django's built-in middleware runs its hooks through ``sync_to_async``, one thread
hop each way per middleware; for an API whose exec round trip should cost a few
milliseconds that is most of the budget. API views need none of it: ``ApiAuth``
asks sandboxes/callers.py, which reads the bearer token or loads the session
itself (async) and checks CSRF, and ``ApiErrorMiddleware`` shapes errors. Pages
keep the full stack.

A request body is admitted before any of it is read (``admit``): a caller without
valid credentials hears 401, a body declared larger than its route takes hears
413, from the headers alone. Under Daphne ide/daphne_internals.py asks ``admit`` while
the socket is paused; under another server ``ApiHandler`` asks it itself.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

from sandboxes import callers
from sandboxes.templates import MAX_UPLOAD_BYTES

from .errors import ApiErrorMiddleware, Handler

log = logging.getLogger(__name__)

# Set by ide/daphne_internals.py when it already admitted the body (same name there).
ADMITTED = "sandbox_ide.body_admitted"

# Routes taking more than a JSON body: (path, the most bytes, the setting that says so).
_UPLOAD_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/api/v1/sandboxes/[^/]+/files/(content|upload)/?$"), "FILES_MAX_UPLOAD"),
    (re.compile(r"^/api/v1/templates/[^/]+/files/?$"), "template files"),
]


@dataclass(frozen=True)
class Admission:
    """The API's word on a request body (see ide/daphne_internals.py ``Admission``)."""

    limit: int | None
    too_large: bytes
    refusal: tuple[int, bytes] | None = None


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"code": code, "message": message}}).encode()


def body_limit(path: str) -> tuple[int, str]:
    """The most body bytes a route takes, and the setting that says so."""
    for pattern, name in _UPLOAD_ROUTES:
        if pattern.match(path):
            if name == "template files":
                return MAX_UPLOAD_BYTES + 1024 * 1024, "the template upload limit"
            return int(getattr(settings, name)), name
    return int(settings.API_MAX_JSON_BODY), "API_MAX_JSON_BODY"


def _header(scope: Any, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def has_body(scope: Any) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return _header(scope, b"transfer-encoding") is not None


def admit_size(scope: Any, limit: int, setting: str) -> Admission:
    """Refuse a body declared larger than ``limit`` (413); cap one that declares nothing."""
    _, too_large = _error(
        413, "payload_too_large", f"The body is larger than {setting} ({limit} bytes)."
    )
    declared = (_header(scope, b"content-length") or b"").strip()
    if declared.isdigit() and int(declared) > limit:
        message = f"The body ({int(declared)} bytes) is larger than {setting} ({limit} bytes)."
        return Admission(limit, too_large, _error(413, "payload_too_large", message))
    return Admission(limit, too_large)


async def admit(scope: Any) -> Admission:
    """Refuse a body from the headers: without valid credentials (401, or 403 for a
    session caller without the CSRF token), or declared larger than the route takes."""
    by_size = admit_size(scope, *body_limit(scope["path"]))
    refused = (await callers.api_caller(callers.headers_request(scope))).refusal
    if refused is not None:
        refusal = _error(refused.status, refused.code, refused.message)
        return Admission(by_size.limit, by_size.too_large, refusal)
    return by_size


async def _send_refusal(send: Any, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiHandler(ASGIHandler):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A server that did not admit the body (not Daphne): admit it here, before
        # Django reads any of it.
        if has_body(scope) and ADMITTED not in (scope.get("extensions") or {}):
            try:
                admission = await admit(scope)
            except Exception:  # the view authenticates again
                log.exception("admitting the body failed; reading it")
            else:
                if admission.refusal is not None:
                    await _send_refusal(send, *admission.refusal)
                    return
        # Django runs each request in its own ThreadSensitiveContext: a fresh thread,
        # hence a fresh database connection, per request. API views only use the async
        # ORM, so they share asgiref's one long-lived sync thread and its connection.
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # django-stubs does not declare BaseHandler's own async response method
        get_response = self._get_response_async  # type: ignore[attr-defined]
        # async in, async out: what ApiErrorMiddleware takes
        handler = cast(Handler, convert_exception_to_response(get_response))
        self._middleware_chain = convert_exception_to_response(ApiErrorMiddleware(handler))
