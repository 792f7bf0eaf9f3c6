"""Every error the SDK raises. Each carries the API's ``code``, the HTTP ``status``
(0 when no answer came) and a ``message`` that says what to do::

    SandboxIDEError                    any failure (.code .status .message)
     ├── ConnectionFailed              the server did not answer
     ├── InvalidRequestError           400: bad input
     │    └── PayloadTooLargeError     413
     ├── AuthenticationError           401: missing or bad token
     ├── PermissionDeniedError         403
     ├── NotFoundError                 404: no such sandbox, file, process ...
     │    └── GoneError                410: e.g. an expired or revoked invite link
     ├── ConflictError                 409: e.g. a non-empty directory
     ├── RateLimitError                429: a limit was reached
     ├── AgentError                    502: the sandbox's agent failed
     ├── EngineUnavailableError        503: the container engine is down
     │    └── SandboxUnavailableError  503: this sandbox would not start
     ├── CommandTimeout                408, or a wait or a request ran out of time
     └── CommandFailed                 exec(check=True) saw a non-zero exit
"""

from __future__ import annotations

from typing import Any


class SandboxIDEError(Exception):
    """Base class: ``code`` (snake_case), ``status`` (HTTP, 0 if none), ``message``."""

    default_code = "error"
    hint = ""

    def __init__(self, message: str, *, code: str | None = None, status: int = 0) -> None:
        self.code = code or self.default_code
        self.status = status
        self.message = f"{message} {self.hint}".strip() if self.hint else message
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, {self.message!r})"


class ConnectionFailed(SandboxIDEError):
    default_code = "connection_failed"
    hint = "Is the server running? Check SANDBOX_IDE_URL (or pass url=)."


class InvalidRequestError(SandboxIDEError):
    default_code = "bad_request"


class PayloadTooLargeError(InvalidRequestError):
    default_code = "payload_too_large"
    hint = "Send less at once (split the upload or write the file in parts)."


class AuthenticationError(SandboxIDEError):
    default_code = "unauthorized"
    hint = (
        "Set SANDBOX_IDE_TOKEN (or pass token=) to a token from the account page or "
        "`python manage.py create_api_token USERNAME`."
    )


class PermissionDeniedError(SandboxIDEError):
    default_code = "forbidden"


class NotFoundError(SandboxIDEError):
    default_code = "not_found"


class GoneError(NotFoundError):
    """410: it existed but is no longer usable (an expired or revoked invite link)."""

    default_code = "gone"


class ConflictError(SandboxIDEError):
    default_code = "conflict"


class RateLimitError(SandboxIDEError):
    default_code = "limit_reached"
    hint = "Wait and retry, or free resources (destroy sandboxes, end processes)."


class AgentError(SandboxIDEError):
    default_code = "agent_error"
    hint = "Retry; if it persists, sb.sleep() then sb.wake() restarts the sandbox."


class EngineUnavailableError(SandboxIDEError):
    default_code = "engine_unavailable"
    hint = "The server's container engine is down: ask its operator to start Docker."


class SandboxUnavailableError(EngineUnavailableError):
    """503 ``sandbox_unavailable``: this sandbox would not start (the message says why)."""

    default_code = "sandbox_unavailable"
    hint = ""


class CommandTimeout(SandboxIDEError, TimeoutError):
    default_code = "timeout"


class CommandFailed(SandboxIDEError):
    """``exec(..., check=True)`` saw a command fail; ``.result`` holds its output."""

    default_code = "command_failed"

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


BY_STATUS: dict[int, type[SandboxIDEError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: InvalidRequestError,
    408: CommandTimeout,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    415: InvalidRequestError,
    429: RateLimitError,
    502: AgentError,
    503: EngineUnavailableError,
}


def from_response(status: int, body: Any, fallback: str = "") -> SandboxIDEError:
    """The exception for an error answer ``{"error": {"code", "message"}}``."""
    code, message = None, fallback or f"HTTP {status}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code") or None
        message = body["error"].get("message") or message
    cls = BY_STATUS.get(status, SandboxIDEError)
    if code == "sandbox_unavailable":
        cls = SandboxUnavailableError
    return cls(message, code=code, status=status)


def from_event(data: Any) -> SandboxIDEError:
    """The exception for an ``error`` event in a stream (``{code, message}``)."""
    code = data.get("code", "error") if isinstance(data, dict) else "error"
    message = data.get("message", "The stream failed.") if isinstance(data, dict) else str(data)
    by_code = {
        "not_found": NotFoundError,
        "limit_reached": RateLimitError,
        "conflict": ConflictError,
        "engine_unavailable": EngineUnavailableError,
        "sandbox_unavailable": SandboxUnavailableError,
        "agent_error": AgentError,
    }
    return by_code.get(code, SandboxIDEError)(message, code=code)
