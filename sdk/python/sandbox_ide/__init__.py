"""Sandbox IDE for Python: isolated sandboxes as a library for scripts and AI agents.

    from sandbox_ide import Sandbox
    sb = Sandbox.get_or_create("demo")        # SANDBOX_IDE_URL, SANDBOX_IDE_TOKEN
    print(sb.exec("python3 -c 'print(6*7)'").stdout)

``AsyncSandbox`` has the same surface with ``await``.
"""

from __future__ import annotations

from ._async_client import (
    AsyncFiles,
    AsyncGit,
    AsyncPorts,
    AsyncProcesses,
    AsyncSandbox,
    AsyncTerminal,
    AsyncTerminals,
)
from ._sync_client import Files, Git, Ports, Processes, Sandbox, Terminal, Terminals
from .errors import (
    AgentError,
    AuthenticationError,
    CommandFailed,
    CommandTimeout,
    ConflictError,
    ConnectionFailed,
    EngineUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SandboxIDEError,
)
from .models import (
    CloneResult,
    CodeContext,
    CommandResult,
    Execution,
    ExecutionError,
    ExposedPort,
    FileEntry,
    FileEvent,
    GitFileStatus,
    GitStatus,
    PortList,
    ProcessInfo,
    ProcessLogs,
    Result,
    SandboxInfo,
    TerminalInfo,
    WriteResult,
)

__version__ = "0.1.0"

__all__ = [
    "AgentError",
    "AsyncFiles",
    "AsyncGit",
    "AsyncPorts",
    "AsyncProcesses",
    "AsyncSandbox",
    "AsyncTerminal",
    "AsyncTerminals",
    "AuthenticationError",
    "CloneResult",
    "CodeContext",
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "ConflictError",
    "ConnectionFailed",
    "EngineUnavailableError",
    "Execution",
    "ExecutionError",
    "ExposedPort",
    "FileEntry",
    "FileEvent",
    "Files",
    "Git",
    "GitFileStatus",
    "GitStatus",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PortList",
    "Ports",
    "ProcessInfo",
    "ProcessLogs",
    "Processes",
    "RateLimitError",
    "Result",
    "Sandbox",
    "SandboxIDEError",
    "SandboxInfo",
    "Terminal",
    "TerminalInfo",
    "Terminals",
    "WriteResult",
    "__version__",
]
