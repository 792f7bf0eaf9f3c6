"""A fake below the backend interface: the real agent, run as a local process.

Unit tests of the service layer use it instead of Docker: "containers" are agent
processes on the host with a temporary directory as their /workspace, so lifecycle
logic (create, start, stop, pause, vanish) is exercised fast and without an engine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from sandboxes.backends.base import AgentAddress, Backend, BackendState, SandboxSpec, Status
from tests.agentkit import UNIT_KEY

ROOT = Path(__file__).resolve().parent.parent


class LocalAgentBackend(Backend):
    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.broken_agent = False  # start() then runs something that never listens

    async def ping(self) -> None:
        return None

    async def create(self, spec: SandboxSpec) -> BackendState:
        self.calls.append(("create", spec.sandbox_id))
        root = Path(tempfile.mkdtemp(prefix=f"fake-{spec.sandbox_id}-"))
        (root / "workspace").mkdir()
        return {"id": spec.sandbox_id, "root": str(root), "env": spec.env}

    async def start(self, state: BackendState) -> BackendState:
        self.calls.append(("start", state["id"]))
        sandbox_id = state["id"]
        if sandbox_id in self.paused:
            os.kill(self.processes[sandbox_id].pid, signal.SIGCONT)
            self.paused.discard(sandbox_id)
            return {}
        env = {
            **os.environ,
            **state["env"],
            "SANDBOX_AGENT_WORKSPACE": str(Path(state["root"]) / "workspace"),
            "SANDBOX_AGENT_KEY": UNIT_KEY.hex(),
            # a home of its own, as in the image: the host user's login files stay out
            "HOME": state["root"],
        }
        command = (
            [sys.executable, "-c", "import time; time.sleep(600)"]
            if self.broken_agent
            else [sys.executable, "-m", "container.agent", "--socket", self._socket(state)]
        )
        self.processes[sandbox_id] = subprocess.Popen(command, cwd=ROOT, env=env)
        return {}

    async def stop(self, state: BackendState) -> None:
        self.calls.append(("stop", state["id"]))
        process = self.processes.pop(state["id"], None)
        self.paused.discard(state["id"])
        if process:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def pause(self, state: BackendState) -> None:
        os.kill(self.processes[state["id"]].pid, signal.SIGSTOP)
        self.paused.add(state["id"])

    async def remove(self, state: BackendState) -> None:
        await self.stop(state)
        shutil.rmtree(state["root"], ignore_errors=True)

    async def status(self, state: BackendState) -> Status:
        if not Path(state["root"]).exists():
            return "missing"
        if state["id"] in self.paused:
            return "paused"
        process = self.processes.get(state["id"])
        return "running" if process and process.poll() is None else "stopped"

    def agent_address(self, state: BackendState) -> AgentAddress:
        return AgentAddress(unix_path=self._socket(state), key=UNIT_KEY)

    def _socket(self, state: BackendState) -> str:
        return str(Path(state["root"]) / "agent.sock")

    def vanish(self, state: BackendState) -> None:
        """What happens when someone removes the container behind our back."""
        process = self.processes.pop(state["id"], None)
        if process:
            process.kill()
            process.wait()
        shutil.rmtree(Path(state["root"]) / "agent.sock", ignore_errors=True)
        for child in Path(state["root"]).iterdir():
            if child.name != "workspace":
                child.unlink()
        # the workspace "volume" stays; the container is gone
        os.rename(state["root"], state["root"] + ".volume")
