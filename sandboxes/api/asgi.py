"""The ASGI handler for /api/: Django without the page middleware.

Django's built-in middleware runs its hooks through ``sync_to_async``, one thread
hop each way per middleware; for an API whose exec round trip should cost a few
milliseconds that is most of the budget. API views need none of it: ``ApiAuth``
reads the bearer token or loads the session itself (async) and checks CSRF, and
``ApiErrorMiddleware`` shapes errors. Pages keep the full stack.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

from .errors import ApiErrorMiddleware


class ApiHandler(ASGIHandler):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Django runs each request in its own ThreadSensitiveContext: a fresh thread,
        # hence a fresh database connection, per request. API views only use the async
        # ORM, so they share asgiref's one long-lived sync thread and its connection.
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(ApiErrorMiddleware(handler))
