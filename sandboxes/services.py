"""The older single home of the sandbox actions, kept importable for this round.

The actions now live by job: ``sandboxes.lifecycle`` (find, create, sleep, wake,
destroy), ``sandboxes.agentconn`` (talking to the agent) and ``sandboxes.execs``
(running commands). About twenty modules still say ``services.<name>``; new code
imports from those modules, and this file goes once the last importer has moved.
"""

from __future__ import annotations

from sandboxes.agent.client import ExecEvent
from sandboxes.agentconn import agent_for, call_agent, open_agent
from sandboxes.execs import ExecRequest, ExecResult, TextStream, exec_collect, exec_stream
from sandboxes.lifecycle import (
    Access,
    SandboxSettings,
    SleepTier,
    check_sandbox_quota,
    destroy_sandbox,
    ensure_running,
    get_or_create_sandbox,
    get_sandbox,
    list_sandboxes,
    sleep_sandbox,
    touch,
    update_sandbox,
)

__all__ = [
    "Access",
    "ExecEvent",
    "ExecRequest",
    "ExecResult",
    "SandboxSettings",
    "SleepTier",
    "TextStream",
    "agent_for",
    "call_agent",
    "check_sandbox_quota",
    "destroy_sandbox",
    "ensure_running",
    "exec_collect",
    "exec_stream",
    "get_or_create_sandbox",
    "get_sandbox",
    "list_sandboxes",
    "open_agent",
    "sleep_sandbox",
    "touch",
    "update_sandbox",
]
