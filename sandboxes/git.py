"""Git in a sandbox: every operation runs in the sandbox's agent.

Credentials for private repositories are passed per call to the agent, which hands
them to that one git process only (see ``container/agent/gitops.py``); they are
never stored, in the sandbox or here, and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from container.agent.protocol import GitProgress, GitRequest, GitResult
from sandboxes import agentconn
from sandboxes.agent.client import expect, receive_message
from sandboxes.errors import AgentProtocolError
from sandboxes.models import Sandbox
from sandboxes.progress import Report, Step


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
    request = _request(op, path, args, credentials)
    result = expect(await agentconn.call_agent(sandbox, request), GitResult).result
    return _checked(op, result, shape)


# The agent reports a stage's whole percents, and git counts without a total about
# once a second: a clone that sends more than this is not a clone.
MAX_PROGRESS = 20_000


async def clone(
    sandbox: Sandbox,
    path: str | None,
    args: dict[str, Any],
    credentials: Credentials | None,
    report: Report,
    *,
    shape: type[BaseModel] | None = None,
) -> dict[str, Any]:
    """``run(sandbox, "clone", ...)`` telling ``report`` how far it is, from git's own
    progress output (an agent too old to send it just answers at the end)."""
    await report(Step("connect", f"Cloning {args.get('url')}"))
    request = _request("clone", path, {**args, "progress": True}, credentials)
    channel = await agentconn.open_agent(sandbox, request)
    try:
        for _ in range(MAX_PROGRESS):
            message = await receive_message(channel)
            if not isinstance(message, GitProgress):
                break
            await report(_step(message))
        else:
            raise AgentProtocolError("it sent more clone progress than a clone makes.")
    finally:
        await channel.close()
    return _checked("clone", expect(message, GitResult).result, shape)


def _step(progress: GitProgress) -> Step:
    stage, current, total = progress.stage[:80], max(progress.current, 0), progress.total
    rate = progress.message.strip(" ,.")[:80]  # git's "1.20 MiB | 2.40 MiB/s, done"
    rate = f", {rate}" if rate else ""
    if total > 0:
        percent = min(current * 100 // total, 100)
        text = f"{stage}: {percent}% ({current} of {total}){rate}"
        return Step("clone", text, current=current, total=total, percent=percent)
    return Step("clone", f"{stage}: {current}{rate}", current=current)


def _request(
    op: str, path: str | None, args: dict[str, Any] | None, credentials: Credentials | None
) -> GitRequest:
    credentials = credentials or Credentials()
    return GitRequest(
        op=op,
        path=path,
        args={k: v for k, v in (args or {}).items() if v is not None},
        username=credentials.username,
        password=credentials.password,
        token=credentials.token,
    )


def _checked(op: str, result: dict[str, Any], shape: type[BaseModel] | None) -> dict[str, Any]:
    if shape is not None:
        try:
            shape.model_validate(result)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "result"
            raise AgentProtocolError(f"its {op} result does not fit ({where}).") from None
    return result
