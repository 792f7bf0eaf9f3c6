"""How a request fails: handlers raise ``AgentFailure`` (or let an ``OSError`` through),
and the connection handler (``server.handle_connection``) answers either with one
``Error`` message. No handler sends an Error for a failure of its own.

An ``OSError`` becomes an ``AgentFailure`` in ``from_os_error`` alone, by its errno:
``not_found``, ``permission_denied`` … (codes the server passes through to the API,
see ``sandboxes/errors.py``), with a sentence that names the path.
"""

from __future__ import annotations

import errno

from .protocol import Error

PROCESS_LIMIT_MESSAGE = (
    "The sandbox cannot start another process: it has reached its process limit "
    "(SANDBOX_PIDS_LIMIT). Stop some of its processes, or restart the sandbox "
    '(POST /sleep {"tier": "stop"}; the next call starts it again).'
)


class AgentFailure(Exception):
    """The request cannot be carried out: ``code`` is one of the API's error codes and
    ``message`` says what to do about it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_error(self) -> Error:
        return Error(code=self.code, message=self.message)


def from_os_error(exc: OSError, path: str | None = None) -> AgentFailure:
    """The failure an operating-system error means for the client; ``path`` is named
    when the error itself names none."""
    number = exc.errno
    named = exc.filename if isinstance(exc.filename, str) else path
    where = named or "the path"
    if number == errno.ENOENT:
        return AgentFailure("not_found", f"No such file or directory: {where}")
    if number == errno.EISDIR:
        return AgentFailure("is_a_directory", f"{where} is a directory, not a file.")
    if number == errno.ENOTDIR:
        return AgentFailure(
            "not_a_directory", f"{where} (or one of its parents) is not a directory."
        )
    if number in (errno.EACCES, errno.EPERM):
        return AgentFailure(
            "permission_denied", f"Permission denied: {where} (the sandbox user may not do that)."
        )
    if number == errno.EEXIST:
        return AgentFailure("already_exists", f"{where} already exists.")
    if number == errno.ENOTEMPTY:
        return AgentFailure(
            "directory_not_empty", f"{where} is not empty; pass recursive=1 to delete it."
        )
    if number in (errno.ENOSPC, errno.EDQUOT):
        return AgentFailure("payload_too_large", "No space left on the sandbox's disk.")
    if number == errno.EAGAIN:  # fork(2) at the pids limit: nothing else here is non-blocking
        return AgentFailure("limit_reached", PROCESS_LIMIT_MESSAGE)
    if number == errno.ELOOP:
        return AgentFailure("bad_request", f"Too many levels of symbolic links: {where}")
    if number == errno.ENAMETOOLONG:
        return AgentFailure("bad_request", f"File name too long: {where}")
    if number == errno.EINVAL:
        return AgentFailure("bad_request", f"Invalid operation on {where}: {exc.strerror}")
    reason = exc.strerror or str(exc)
    return AgentFailure("agent_error", f"{named}: {reason}" if named else reason)
