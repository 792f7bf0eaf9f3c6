"""Git in a sandbox (issue 3): every operation runs in the sandbox's agent.

Credentials for private repositories are passed per call to the agent, which hands
them to that one git process only (see ``container/agent/gitops.py``); they are
never stored, in the sandbox or here, and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from container.agent.protocol import GitRequest, GitResult
from sandboxes import services
from sandboxes.errors import AgentError
from sandboxes.models import Sandbox


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials(username={self.username!r}, password=***, token=***)"


async def run(
    sandbox: Sandbox,
    op: str,
    path: str | None = None,
    args: dict[str, Any] | None = None,
    credentials: Credentials | None = None,
) -> dict[str, Any]:
    """Run one git operation (``clone``, ``status``, ... see gitops.OPERATIONS)."""
    credentials = credentials or Credentials()
    request = GitRequest(
        op=op,
        path=path,
        args={k: v for k, v in (args or {}).items() if v is not None},
        username=credentials.username,
        password=credentials.password,
        token=credentials.token,
    )
    reply = await services.call_agent(sandbox, request)
    if not isinstance(reply, GitResult):
        raise AgentError(f"The sandbox's agent answered {reply.type!r} to a git request.")
    return reply.result
