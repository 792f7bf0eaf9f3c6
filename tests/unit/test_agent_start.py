"""The agent's start: a stopped sandbox waits for it when it wakes, so what it imports
before it answers is kept to what a wake asks for first; the rest loads on demand."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from container.agent.protocol import ListeningPorts, PortList, TerminalList, TerminalListing
from sandboxes.agent.client import AgentClient
from sandboxes.backends.base import AgentAddress

ROOT = Path(__file__).resolve().parents[2]
KEY = b"agent-start-test-key"
LOADED_LATER = ("pyte", "container.agent.terminals", "container.agent.gitops")


def test_the_agent_imports_terminals_and_git_only_when_asked() -> None:
    code = (
        "import sys; import container.agent.server; "
        f"print([m for m in {LOADED_LATER!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_a_fresh_agent_answers_requests_of_the_modules_it_loads_later(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "agent.sock")
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "container.agent",
        "--socket",
        path,
        cwd=ROOT,
        env={**os.environ, "SANDBOX_AGENT_KEY": KEY.hex()},
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        client = AgentClient(AgentAddress(unix_path=path, key=KEY))
        await client.wait_ready(30)
        listing = await client.call(TerminalList())
        assert isinstance(listing, TerminalListing)
        assert listing.terminals == []
        assert isinstance(await client.call(ListeningPorts()), PortList)
    finally:
        agent.terminate()
        await agent.wait()
