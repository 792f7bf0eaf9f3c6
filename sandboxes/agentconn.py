"""Talking to a sandbox's agent: every call wakes a sleeping sandbox.

Every feature that talks to the agent opens its connection here, so "any call
wakes a sleeping sandbox" holds everywhere, with one named exception: ``peek_agent``,
for what a viewer's open page asks again and again (its ports and terminals), which
must neither wake the owner's sandbox nor count as its activity.
"""

from __future__ import annotations

from container.agent.protocol import Channel, Message
from sandboxes.agent.client import AgentClient, AgentUnreachable, receive_message
from sandboxes.backends import get_backend
from sandboxes.lifecycle import ensure_running, touch
from sandboxes.models import Sandbox


async def agent_for(sandbox: Sandbox) -> AgentClient:
    """An agent client for a sandbox believed running, without asking the engine.

    The hot path (every exec) costs no engine call; if the agent does not answer the
    caller falls back to ``ensure_running`` (see ``with_agent``).
    """
    await touch(sandbox)
    if sandbox.status == Sandbox.Status.RUNNING and sandbox.backend_state:
        return AgentClient(get_backend().agent_address(sandbox.backend_state))
    return await ensure_running(sandbox)


async def open_agent(sandbox: Sandbox, request: Message) -> Channel:
    """Open an agent connection carrying ``request``, waking the sandbox if needed."""
    client = await agent_for(sandbox)
    try:
        return await client.open(request)
    except AgentUnreachable:
        client = await ensure_running(sandbox)
        return await client.open(request)


async def call_agent(sandbox: Sandbox, request: Message) -> Message:
    """A request answered by one control message (agent errors raise SandboxError)."""
    channel = await open_agent(sandbox, request)
    try:
        return await receive_message(channel)
    finally:
        await channel.close()


async def peek_agent(sandbox: Sandbox, request: Message) -> Message | None:
    """Ask the agent of a running sandbox without waking it or recording activity.

    None when the sandbox sleeps (or is going to sleep right now): a watcher's page
    polling every few seconds must let an idle workspace sleep, and never wake it.
    """
    if sandbox.status != Sandbox.Status.RUNNING or not sandbox.backend_state:
        return None
    client = AgentClient(get_backend().agent_address(sandbox.backend_state))
    try:
        channel = await client.open(request)
    except AgentUnreachable:
        return None
    try:
        return await receive_message(channel)
    finally:
        await channel.close()
