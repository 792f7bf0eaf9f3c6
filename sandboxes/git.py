"""Git in a sandbox: every operation runs in the sandbox's agent.

Credentials for private repositories are passed per call to the agent, which hands
them to that one git process only (see ``container/agent/gitops.py``); they are
never stored, in the sandbox or here, and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from container.agent.protocol import GitRequest, GitResult
from sandboxes import agentconn
from sandboxes.agent.client import expect
from sandboxes.errors import AgentProtocolError
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
    *,
    shape: type[BaseModel] | None = None,
) -> dict[str, Any]:
    """Run one git operation (``clone``, ``status``, ... see gitops.OPERATIONS).

    The result is the JSON object the agent sent (bounded by ``decode_untrusted``);
    with ``shape`` (the API's answer schema) it must fit it, else AgentProtocolError.
    """
    credentials = credentials or Credentials()
    request = GitRequest(
        op=op,
        path=path,
        args={k: v for k, v in (args or {}).items() if v is not None},
        username=credentials.username,
        password=credentials.password,
        token=credentials.token,
    )
    result = expect(await agentconn.call_agent(sandbox, request), GitResult).result
    if shape is not None:
        try:
            shape.model_validate(result)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "result"
            raise AgentProtocolError(f"its {op} result does not fit ({where}).") from None
    return result
