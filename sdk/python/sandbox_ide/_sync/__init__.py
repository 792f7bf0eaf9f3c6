# GENERATED from sandbox_ide/_async/__init__.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""The client, one module per resource. The sync package ``_sync`` is generated from
the async package ``_async`` by ``sdk/python/unasync.py``: edit ``_async``, then run
``python sdk/python/unasync.py``."""

from __future__ import annotations

from .commands import Sessions
from .courses import Course
from .files import Files
from .git import Git
from .http import HTTP
from .ports import Ports
from .processes import Process, Processes
from .sandbox import ForkResult, Sandbox
from .templates import Template
from .terminals import Terminal, Terminals

__all__ = [
    "Course",
    "Files",
    "ForkResult",
    "Git",
    "HTTP",
    "Ports",
    "Process",
    "Processes",
    "Sandbox",
    "Sessions",
    "Template",
    "Terminal",
    "Terminals",
]
