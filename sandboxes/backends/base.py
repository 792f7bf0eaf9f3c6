"""The one interface between sandbox logic and a container engine.

Modelled on JupyterHub's Spawner: a small set of async operations, and a JSON
``state`` the backend returns, the server stores and hands back, so any server
process (or a restarted one) can act on a sandbox it did not create. A Kubernetes
backend (a Pod and a PVC per sandbox, agent over the Pod network) fits the same
interface (docs/scaling.md maps every method).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sandboxes.errors import BadRequest, SandboxUnavailable

BackendState = dict[str, Any]
Status = Literal["running", "paused", "stopped", "missing", "error"]


@dataclass(frozen=True)
class AgentAddress:
    """Where the agent listens (a unix socket path, or a TCP host and port) and the
    sandbox's key, which the agent must prove it holds before it is believed."""

    unix_path: str | None = None
    host: str | None = None
    port: int | None = None
    key: bytes = b""


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a backend needs to create a sandbox's container and volume."""

    sandbox_id: str
    owner_id: int
    image: str
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    egress: str = "all"  # "none": no network interface but loopback (allow-lists: apply_egress)
    # Lower than the server's settings only: {"memory_mb", "cpus", "disk_mb"}.
    limits: dict[str, float] = field(default_factory=dict)
    # A snapshot's state (from ``Backend.snapshot``): the sandbox starts on its image
    # with a workspace seeded from its copy.
    snapshot: BackendState | None = None


@dataclass(frozen=True)
class Managed:
    """A container found on the engine by its labels."""

    sandbox_id: str
    created_at: float  # unix time
    state: BackendState


class Backend(abc.ABC):
    """Create, run and remove sandbox containers. All methods are safe to repeat."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise EngineUnavailable unless the engine answers."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec) -> BackendState:
        """Create the workspace volume and the container (not started).

        A backend that cannot give the network asked for safely gives none and says
        why in the returned state's ``egress_detail`` (empty otherwise)."""

    @abc.abstractmethod
    async def start(self, state: BackendState) -> BackendState:
        """Start (or unpause) the container; return once the agent may be dialled.

        Returns what changed in the state (merged into it and kept by the server):
        where the agent listens when a start moves it (a new published port, a new
        Pod address); empty when nothing did."""

    async def remove_container(self, state: BackendState) -> None:
        """Remove the container but keep the workspace, for a ``create`` with the
        same sandbox id to make a new one on it (an agent too old to keep, see
        ``lifecycle.ensure_running``). Missing parts are fine."""
        raise SandboxUnavailable("This sandbox backend cannot recreate a sandbox's container.")

    @abc.abstractmethod
    async def stop(self, state: BackendState) -> None:
        """Stop the container, keeping its filesystem and the workspace."""

    @abc.abstractmethod
    async def pause(self, state: BackendState) -> None:
        """Freeze the container's processes, keeping their memory."""

    @abc.abstractmethod
    async def remove(self, state: BackendState) -> None:
        """Remove the container and the workspace volume. Missing parts are fine."""

    @abc.abstractmethod
    async def status(self, state: BackendState) -> Status:
        """What the engine says the container is doing now."""

    @abc.abstractmethod
    def agent_address(self, state: BackendState) -> AgentAddress:
        """Where to dial the sandbox's agent."""

    async def snapshot(self, state: BackendState, snapshot_id: str, owner_id: int) -> BackendState:
        """Capture the sandbox's files (its root filesystem's changes and its
        workspace) into something that outlives it, with a brief pause at most.

        The state returned holds ``size_bytes`` and ``paused_ms`` besides what the
        backend needs to start sandboxes from it (``SandboxSpec.snapshot``)."""
        raise BadRequest(
            "This server's container backend cannot take snapshots.", code="snapshots_unsupported"
        )

    async def remove_snapshot(self, state: BackendState) -> None:
        """Remove what ``snapshot`` made. Missing parts are fine."""
        return None

    async def managed(self) -> list[Managed]:
        """Every sandbox container this deployment owns, for adoption and orphan
        clean-up after a restart; optional."""
        return []

    async def apply_egress(
        self, state: BackendState, mode: str, networks: Sequence[str]
    ) -> BackendState:
        """Make a started (or paused) sandbox's direct traffic follow ``mode`` now:
        "all" (the public internet), "allow" (only ``networks``, IPv4 CIDRs, and the
        egress proxy) or "none" (nothing). Returns what the server keeps in the
        sandbox's state: ``egress_address`` (its address, which the proxy checks)
        and ``egress_proxy`` (the proxy's URL, empty when it has none). A backend that
        cannot enforce an allow-list says so instead of giving more."""
        if mode != "all":
            raise SandboxUnavailable("This sandbox backend cannot enforce egress allow-lists.")
        return {}

    async def egress_proxy_address(self) -> tuple[str, int] | None:
        """Where the egress proxy listens so that sandboxes, and nothing else, can
        reach it (None: this backend has no place for one)."""
        return None

    async def logs(self, state: BackendState, tail: int = 50) -> str:
        """The container's last output lines, for error messages; optional."""
        return ""
