"""The one exception tree of the project. The API layer turns any of these into
``{"error": {"code", "message"}}`` with the status it carries, in one place.

    SandboxError                      500 internal_error
     ├── BadRequest                   400 bad_request (and finer codes)
     ├── Unauthorized                 401 unauthorized
     ├── Forbidden                    403 forbidden
     ├── NotFound                     404 not_found
     ├── Timeout                      408 timeout: waited in vain (wait-for-port/log)
     ├── Conflict                     409 conflict
     ├── PayloadTooLarge              413 payload_too_large
     ├── LimitReached                 429 limit_reached
     ├── QuotaExceeded                507 disk_quota_exceeded
     ├── AgentError                   502 agent_error: the sandbox's agent failed
     │    └── AgentProtocolError      502 agent_protocol_error: it broke the protocol or a bound
     └── EngineUnavailable            503 engine_unavailable
          └── SandboxUnavailable      503 sandbox_unavailable: it would not start
"""

from __future__ import annotations


class SandboxError(Exception):
    status = 500
    code = "internal_error"
    default_message = "Something went wrong on the server."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or self.default_message
        if code:
            self.code = code
        super().__init__(self.message)


class BadRequest(SandboxError):
    status = 400
    code = "bad_request"
    default_message = "The request is not valid."


class Unauthorized(SandboxError):
    status = 401
    code = "unauthorized"
    default_message = (
        "Authentication required: send 'Authorization: Bearer <token>' "
        "(create one with `manage.py create_api_token`) or log in."
    )


class Forbidden(SandboxError):
    status = 403
    code = "forbidden"
    default_message = "You may not do that."


class NotFound(SandboxError):
    status = 404
    code = "not_found"
    default_message = "Not found."


class Timeout(SandboxError):
    status = 408
    code = "timeout"
    default_message = "Gave up waiting: the timeout passed first."


class Conflict(SandboxError):
    status = 409
    code = "conflict"
    default_message = "That conflicts with the current state."


class PayloadTooLarge(SandboxError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class LimitReached(SandboxError):
    status = 429
    code = "limit_reached"
    default_message = "A limit was reached; try again later."


class QuotaExceeded(SandboxError):
    status = 507
    code = "disk_quota_exceeded"
    default_message = "The sandbox's disk quota is used up; delete files to write again."


class AgentError(SandboxError):
    status = 502
    code = "agent_error"
    default_message = "The sandbox's agent failed to answer."


class AgentProtocolError(AgentError):
    """The agent sent what the protocol does not allow (a frame or message too large,
    too many entries, fields of the wrong type, more than it was asked for).

    A tenant may replace its own agent, so this is an attack as often as a bug: the
    call ends here, with server memory untouched, and the message says what was wrong.
    """

    code = "agent_protocol_error"
    default_message = "The sandbox's agent broke the protocol."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(
            f"The sandbox's agent broke the protocol: {message}" if message else None, code=code
        )


class EngineUnavailable(SandboxError):
    status = 503
    code = "engine_unavailable"
    default_message = (
        "The container engine is not available: start Docker (e.g. `dockerd &`) "
        "and check that `docker info` answers."
    )


class SandboxUnavailable(EngineUnavailable):
    code = "sandbox_unavailable"
    default_message = "The sandbox could not be started."


_BY_CODE: dict[str, type[SandboxError]] = {
    "bad_request": BadRequest,
    "not_found": NotFound,
    "conflict": Conflict,
    "forbidden": Forbidden,
    "payload_too_large": PayloadTooLarge,
    "limit_reached": LimitReached,
    "timeout": Timeout,
    "disk_quota_exceeded": QuotaExceeded,
}


def from_agent(code: str, message: str) -> SandboxError:
    """The error the agent reported, as the exception the API will answer with.

    The agent may refine a code (``is_a_directory``); its class is chosen by the
    generic code the refinement names in ``AGENT_CODES`` or by the code itself.
    """
    cls = _BY_CODE.get(AGENT_CODES.get(code, code), AgentError)
    return cls(message, code=code)


# Finer codes the agent uses, mapped to the generic class they belong to.
AGENT_CODES: dict[str, str] = {
    "is_a_directory": "bad_request",
    "not_a_directory": "bad_request",
    "directory_not_empty": "conflict",
    "already_exists": "conflict",
    "permission_denied": "forbidden",
    # processes, sessions and git
    "process_exited": "conflict",
    "stdin_not_open": "conflict",
    "stdin_closed": "conflict",
    "stdin_full": "limit_reached",
    "git_error": "bad_request",
    "git_auth_failed": "bad_request",
    "not_a_repository": "bad_request",
    "push_rejected": "conflict",
    "nothing_to_commit": "conflict",
}
