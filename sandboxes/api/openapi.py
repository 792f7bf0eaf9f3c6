"""The OpenAPI document, completed where django-ninja cannot see the truth.

django-ninja generates the document from the views and their schemas; this adds what
lives outside a view's signature, so that the document stays true for every area:

- the security schemes (bearer token for programs, session cookie for the browser);
- the error responses any operation can give (``ErrorOut``), whatever its router
  declared: bad input, auth, CSRF, a sandbox that is not found, body too large,
  limits, a failing agent, an unavailable engine;
- the ``text/event-stream`` alternative of the streaming operations (``Accept``);
- file downloads as bytes of any media type.
"""

from __future__ import annotations

import re
from typing import Any

from ninja import NinjaAPI

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}

# Statuses every operation may answer with, and why (see sandboxes/errors.py).
COMMON_ERRORS: dict[int, str] = {
    400: "Bad input: invalid JSON, an unknown or mistyped field, a bad path.",
    401: "No credentials, or a bearer token that is not valid.",
    403: "Not allowed (e.g. a session caller failed the CSRF check).",
    413: "The request body is too large.",
    429: "A limit was reached; try again later.",
    503: "The container engine is unavailable or the sandbox would not start.",
}
# Operations on one sandbox may also find nothing, conflict with its state, or meet a
# failing agent inside it.
SANDBOX_ERRORS: dict[int, str] = {
    404: "No such sandbox (or it belongs to someone else), or nothing at that path.",
    409: "That conflicts with the sandbox's current state.",
    502: "The sandbox's agent failed to answer.",
}

SSE_EVENTS: dict[str, str] = {
    "/exec": '`stdout`/`stderr` events (`{"data": text}`), then one `exit` event '
    "(`{exit_code, success, timed_out, duration_ms}`).",
    "/logs": "`stdout`/`stderr` events as the process writes (`?follow=1`), then `exit`.",
    "/code/run": "`stdout`, `stderr`, `result`, `error` events, then one `end` event.",
    "/files/watch": "one event per change in the watched directory.",
}

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `python manage.py create_api_token USERNAME` "
        "or the account page.",
    },
    "sessionAuth": {
        "type": "apiKey",
        "in": "cookie",
        "name": "sessionid",
        "description": "The browser's Django session (unsafe methods need X-CSRFToken).",
    },
}

_SANDBOX_PATH = re.compile(r"/sandboxes/\{[^}]+\}")


def complete(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    document["security"] = [{"bearerAuth": []}, {"sessionAuth": []}]
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation.pop("security", None)  # the global alternatives apply
            _add_errors(operation, path)
            _add_event_stream(operation, path, method)
            _add_raw_bytes(operation, path, method)
    return document


def _add_errors(operation: dict[str, Any], path: str) -> None:
    # ninja keys statuses by int; use one key type so that no status is listed twice
    responses = {str(k): v for k, v in operation["responses"].items()}
    operation["responses"] = responses
    errors = dict(COMMON_ERRORS)
    if _SANDBOX_PATH.search(path):
        errors.update(SANDBOX_ERRORS)
    for status, response in responses.items():  # a declared error without a body shape
        if status.isdigit() and int(status) >= 400 and not response.get("content"):
            response["content"] = {"application/json": {"schema": ERROR_REF}}
    for code, description in errors.items():
        response = responses.setdefault(str(code), {"description": description})
        content = response.setdefault("content", {})
        content.setdefault("application/json", {"schema": ERROR_REF})
    operation["responses"] = dict(sorted(responses.items()))


def sse_schema(events: str) -> dict[str, Any]:
    """One Server-Sent Event (OpenAPI 3.1: the schema of a stream describes each event)."""
    return {
        "type": "object",
        "description": "Server-Sent Events: " + events.removeprefix("Server-Sent Events: "),
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }


def _add_event_stream(operation: dict[str, Any], path: str, method: str) -> None:
    ok = operation["responses"].get("200")
    if ok is None:
        return
    content = ok.setdefault("content", {})
    for suffix, events in SSE_EVENTS.items():
        if path.endswith(suffix) and "text/event-stream" not in content:
            content["text/event-stream"] = {}
            ok["description"] = (
                ok.get("description", "OK") + f" With `Accept: text/event-stream`: {events}"
            )
    stream = content.get("text/event-stream")
    if stream is not None and stream.get("schema", {}).get("type") in (None, "string"):
        description = stream.get("schema", {}).get("description") or ok.get("description", "")
        stream["schema"] = sse_schema(description)


# Responses that are a file's own bytes, typed by its name: any media type.
RAW_BYTES = {("get", "/files/content"): ("200", "206")}
BINARY = {"schema": {"type": "string", "format": "binary"}}


def _add_raw_bytes(operation: dict[str, Any], path: str, method: str) -> None:
    for (verb, suffix), statuses in RAW_BYTES.items():
        if method != verb or not path.endswith(suffix):
            continue
        for status in statuses:
            response = operation["responses"].get(status)
            if response is not None:
                response["content"] = {"*/*": BINARY}


class SandboxAPI(NinjaAPI):
    """NinjaAPI whose OpenAPI document is completed by :func:`complete`."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        return complete(super().get_openapi_schema(*args, **kwargs))
