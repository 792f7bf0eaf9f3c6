"""The client, one module per resource. The sync package ``_sync`` is generated from
the async package ``_async`` by ``sdk/python/unasync.py``: edit ``_async``, then run
``python sdk/python/unasync.py``."""

from __future__ import annotations

from .commands import AsyncSessions
from .courses import AsyncCourse
from .files import AsyncFiles
from .git import AsyncGit
from .http import AsyncHTTP
from .ports import AsyncPorts
from .processes import AsyncProcess, AsyncProcesses
from .sandbox import AsyncForkResult, AsyncSandbox
from .templates import AsyncTemplate
from .terminals import AsyncTerminal, AsyncTerminals

__all__ = [
    "AsyncCourse",
    "AsyncFiles",
    "AsyncForkResult",
    "AsyncGit",
    "AsyncHTTP",
    "AsyncPorts",
    "AsyncProcess",
    "AsyncProcesses",
    "AsyncSandbox",
    "AsyncSessions",
    "AsyncTemplate",
    "AsyncTerminal",
    "AsyncTerminals",
]
