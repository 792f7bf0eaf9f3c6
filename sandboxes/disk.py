"""A sandbox's disk use against its quota, as its agent measures it.

The quota itself is kept inside the sandbox by the agent (container/agent/quota.py):
the engine here cannot enforce one (see the README's lifecycle section).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from container.agent.protocol import DiskUsage, DiskUsageInfo
from sandboxes.agent.client import AgentClient
from sandboxes.backends import get_backend
from sandboxes.errors import SandboxError
from sandboxes.models import Sandbox

# Reading the sandbox's usage must never hold up (or wake) the sandbox's GET.
USAGE_TIMEOUT = 1.0


async def disk_usage(sandbox: Sandbox, fresh: bool = False) -> dict[str, Any] | None:
    """``{"used_bytes", "quota_bytes", "exceeded", "message"}`` of a running sandbox,
    or None when it is asleep, has no quota, or its agent does not answer at once."""
    if sandbox.status != Sandbox.Status.RUNNING or not sandbox.backend_state:
        return None
    client = AgentClient(get_backend().agent_address(sandbox.backend_state))
    reply = None
    with contextlib.suppress(SandboxError, TimeoutError, OSError):
        reply = await asyncio.wait_for(client.call(DiskUsage(fresh=fresh)), USAGE_TIMEOUT)
    if not isinstance(reply, DiskUsageInfo) or not reply.quota:
        return None
    return {
        "used_bytes": reply.used,
        "quota_bytes": reply.quota,
        "exceeded": reply.exceeded,
        "message": reply.message,
    }
