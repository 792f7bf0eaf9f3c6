"""Where a request's paths point: relative paths are relative to the workspace.

The agent acts with the sandbox user's uid (see ``identity``), so a resolved path is
no boundary by itself: it only decides which file in the container is meant.
"""

from __future__ import annotations

import os

from .failures import AgentFailure

# Overridable so the agent can run outside a container in unit tests.
WORKSPACE = os.environ.get("SANDBOX_AGENT_WORKSPACE", "/workspace")


def resolve_path(path: str | None, default: str = WORKSPACE) -> str:
    if not path:
        return default
    return os.path.normpath(os.path.join(WORKSPACE, path))


def working_directory(cwd: str) -> str:
    """``cwd`` (already resolved) if it is a directory, else the ``not_found`` failure."""
    if not os.path.isdir(cwd):
        raise AgentFailure("not_found", f"working directory {cwd} does not exist")
    return cwd
