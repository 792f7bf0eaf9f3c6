"""Every API failure as ``{"error": {"code", "message"}}`` with a fitting status.

The exception handlers cover what happens inside a view; ``ApiErrorMiddleware``
covers what happens around one (unknown URL, wrong method, bad Host, oversized
body) so that no client of /api/ ever sees an HTML error page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from sandboxes.errors import SandboxError

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

_STATUS_CODES = {
    400: ("bad_request", "The request is not valid."),
    401: ("unauthorized", "Authentication required."),
    403: ("forbidden", "You may not do that."),
    404: ("not_found", "There is nothing at this URL."),
    405: ("method_not_allowed", "This URL does not accept that method."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send a JSON body (Content-Type: application/json)."),
    429: ("limit_reached", "A limit was reached; try again later."),
    500: ("internal_error", "Something went wrong on the server."),
}


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors as one sentence naming each field (the API's 400s and the MCP
    tools' argument errors say the same)."""
    parts = []
    for error in errors[:5]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "payload")]
        where = ".".join(loc) or "body"
        msg = error.get("msg", "is invalid")
        if error.get("type") == "extra_forbidden":
            msg = "is not a known field"
        elif error.get("type") == "missing":
            msg = "is required"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def install_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(SandboxError)
    def sandbox_error(request: HttpRequest, exc: SandboxError) -> HttpResponse:
        return error_response(exc.status, exc.code, exc.message)

    @api.exception_handler(ValidationError)
    def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors = list(exc.errors)
        if any(e.get("type") == "json_invalid" for e in errors) or not errors:
            return error_response(400, "invalid_json", "The request body is not valid JSON.")
        return error_response(400, "invalid_request", describe_validation(errors))

    @api.exception_handler(AuthenticationError)
    def auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return error_response(401, *_STATUS_CODES[401])

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400 and "parse" in str(exc):  # ninja's body parser
            return error_response(400, "invalid_json", "The request body is not valid JSON.")
        code, _ = _STATUS_CODES.get(exc.status_code, ("error", ""))
        return error_response(exc.status_code, code, str(exc))

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, "not_found", str(exc) or _STATUS_CODES[404][1])

    @api.exception_handler(RequestDataTooBig)
    def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return error_response(413, "payload_too_large", "The request body is too large.")

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, *_STATUS_CODES[500])


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class ApiErrorMiddleware:
    """Turn non-JSON error responses under /api/ into the API's error shape."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        code, message = _STATUS_CODES.get(
            response.status_code, ("error", f"HTTP {response.status_code}")
        )
        if response.status_code == 405 and response.get("Allow"):
            message = f"This URL accepts {response['Allow']}."
        new = error_response(response.status_code, code, message)
        if response.get("Allow"):
            new["Allow"] = response["Allow"]
        return new
