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

No thread hop unless the database is used (``ApiHandler.handle``). Django's handler
hops to a worker thread twice per request whatever the view does: once for the
``request_started`` receivers, once to close the response. Both exist to look after
database connections (``reset_queries``, ``close_old_connections``), and those live
on asgiref's one database thread, where the API's async ORM calls run. So the API
does that thread's hygiene itself, after the response is sent and only if a query ran
there since the last time (``DatabaseUse``): an exec whose caller and sandbox come
from memory (``sandboxes.callers``, ``sandboxes.rows``) never leaves the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, reset_queries
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.http import HttpResponseBase
from django.urls import set_script_prefix

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


class DatabaseUse:
    """Counts statements run on any database connection, so a request can tell whether
    connections need looking after (``ApiHandler``)."""

    statements = 0
    looked_after = 0

    @classmethod
    def count(cls, execute: Callable[..., Any], *args: Any) -> Any:
        cls.statements += 1
        return execute(*args)

    @classmethod
    def due(cls) -> bool:
        """Whether a statement ran since the last hygiene; claims it if so."""
        if cls.statements == cls.looked_after:
            return False
        cls.looked_after = cls.statements
        return True


@receiver(connection_created)
def _count_statements(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if DatabaseUse.count not in connection.execute_wrappers:
        connection.execute_wrappers.append(DatabaseUse.count)


def _database_hygiene() -> None:
    """What Django's request signals do for the calling thread's connections."""
    reset_queries()
    close_old_connections()


async def _finish(response: HttpResponseBase | None) -> None:
    """Close the response, or say the request finished without one, then look after
    the database thread's connections there if a query ran."""
    if response is None:
        signals.request_finished.send(sender=ApiHandler)
    elif response.streaming:
        await sync_to_async(response.close)()  # closes its iterator, which may block
    else:
        # Closes the request's uploaded files and sends request_finished, whose
        # receivers act on this thread's database connections: there are none.
        response.close()
    if DatabaseUse.due():
        await sync_to_async(_database_hygiene)()


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

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle``, with the database's hygiene done by
        ``_finish`` (see the module's docstring) instead of in two thread hops."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        # Sent here, not from a worker thread: Django's receivers act on the calling
        # thread's database connections, and this one has none (see ``_finish``).
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(cast(HttpResponseBase, error_response), send)
            await _finish(error_response)
            return

        async def process_request() -> HttpResponseBase:
            response: HttpResponseBase = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left
                await self.send_response(response, send)
            return response

        # The client leaving cancels the view (a long exec, a stream).
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        await asyncio.wait([listening, processing], return_when=asyncio.FIRST_COMPLETED)
        for task in (listening, processing):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response: HttpResponseBase | None = processing.result()
        except (asyncio.CancelledError, RequestAborted):
            response = None
        await _finish(response)
        body_file.close()

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # django-stubs does not declare BaseHandler's own async response method
        get_response = self._get_response_async  # type: ignore[attr-defined]
        # async in, async out: what ApiErrorMiddleware takes
        handler = cast(Handler, convert_exception_to_response(get_response))
        self._middleware_chain = convert_exception_to_response(ApiErrorMiddleware(handler))
