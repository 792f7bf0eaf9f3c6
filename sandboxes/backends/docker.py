"""The Docker backend, on the ``docker`` SDK.

docker-py is synchronous, so every engine call runs in a thread pool and the event
loop never blocks on the engine. As in DockerSpawner, removing what is already gone
(404) or already being removed (409) counts as done.

Containers are hardened by default: every capability dropped but SETUID, SETGID and
SETPCAP (which the agent uses once, to drop them all for itself and its programs),
``no-new-privileges``, the engine's seccomp profile, pids/memory/CPU limits, capped
logs, no host paths but the sandbox's own agent-socket directory, and a network
where sandboxes cannot reach each other.

The agent starts as root in the container and runs every program as the sandbox
user (uid 1000), who cannot signal, trace or reconfigure it (container/agent/
identity.py). Its socket lives in a host directory that only root may enter, so
nothing a sandbox's code writes decides where the server connects; and each
connection opens with a proof of the sandbox's own key (``agent_key``, given to
the agent in ``SANDBOX_AGENT_KEY``), so the server knows who answers. With
``SANDBOX_AGENT_TRANSPORT=tcp`` the agent also listens on AGENT_TCP_PORT, which the
engine publishes on the host's 127.0.0.1 only; every connection there is challenged
(docs/scaling.md), and the server dials 127.0.0.1, never the container's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from django.conf import settings

from sandboxes.engine_faults import DISK_FULL, classify
from sandboxes.errors import EngineUnavailable, SandboxUnavailable

from . import egress_rules, isolation
from .base import AgentAddress, Backend, BackendState, Managed, SandboxSpec, Status

T = TypeVar("T")
log = logging.getLogger(__name__)

AGENT_DIR_IN_CONTAINER = "/run/sandbox-agent"
AGENT_SOCKET = "agent.sock"
# The agent's network listener inside the container (SANDBOX_AGENT_TRANSPORT=tcp);
# the engine publishes it on a free port of the host's loopback only.
AGENT_TCP_PORT = 7077
LABEL = "sandbox-ide"
RULES_RECHECK = 30.0  # seconds between checks that the bridge's firewall rules are in


def bridge_name(prefix: str) -> str:
    """A stable Linux interface name (at most 15 characters) for a prefix's bridge."""
    return "sbx" + hashlib.sha256(prefix.encode()).hexdigest()[:10]


def resource_limits(spec: SandboxSpec) -> tuple[int, float]:
    """Memory (bytes) and CPUs for a sandbox: a template may ask for less than the
    server's limits, never more."""
    memory = int(settings.SANDBOX_MEMORY_LIMIT)
    cpus = float(settings.SANDBOX_CPU_LIMIT)
    if spec.limits.get("memory_mb"):
        memory = min(memory, int(spec.limits["memory_mb"] * 1024 * 1024))
    if spec.limits.get("cpus"):
        cpus = min(cpus, float(spec.limits["cpus"]))
    return memory, cpus


def disk_quota(spec: SandboxSpec) -> int:
    """Bytes the sandbox's files may occupy (0: unlimited); a template may ask for
    less than SANDBOX_DISK_QUOTA, never more. The agent keeps it (container/agent/quota.py)."""
    quota = int(settings.SANDBOX_DISK_QUOTA)
    if spec.limits.get("disk_mb"):
        wanted = int(spec.limits["disk_mb"] * 1024 * 1024)
        quota = min(quota, wanted) if quota else wanted
    return max(0, quota)


def agent_environment(
    spec: SandboxSpec, key: str, inherited: str = "", *, tcp: bool = False
) -> dict[str, str]:
    """The agent's configuration: only ever from the server. ``TENANT_ENV`` names the
    sandbox's own variables, which the agent replaces by their current values; with
    ``inherited`` (a snapshot image's label: the variables of the sandbox it was taken
    of, baked into the image) those too, so that the new sandbox's env alone counts.
    ``TCP`` is always set (empty: no network listener), so that a snapshot image's
    value never decides it."""
    names = set(spec.env)
    with contextlib.suppress(ValueError, TypeError):
        names.update(str(name) for name in json.loads(inherited or "[]"))
    return {
        "SANDBOX_AGENT_DISK_QUOTA": str(disk_quota(spec)),
        "SANDBOX_AGENT_KEY": key,
        "SANDBOX_AGENT_TCP": f"0.0.0.0:{AGENT_TCP_PORT}" if tcp else "",
        "SANDBOX_AGENT_TENANT_ENV": json.dumps(sorted(names)),
    }


def published_port(attrs: dict[str, Any]) -> int | None:
    """The host port the engine gave the agent's listener on 127.0.0.1 (it changes
    with every start), or None while it publishes none (the container is stopped)."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{AGENT_TCP_PORT}/tcp") or []:
        if binding.get("HostIp") == "127.0.0.1" and str(binding.get("HostPort", "")).isdigit():
            return int(binding["HostPort"])
    return None


def agent_transport(attrs: dict[str, Any]) -> str:
    """ "tcp" when the container was made to publish its agent's port, else "unix"."""
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return "tcp" if f"{AGENT_TCP_PORT}/tcp" in bindings else "unix"


def agent_dir_binding(path: Path) -> dict[str, Any]:
    """Container keyword arguments that bind the agent directory. A directory we could
    not make root's ourselves is left to the engine, which makes a missing bind
    source itself, root's (see ``DockerBackend._make_agent_dir``)."""
    if path.exists():
        return {"mounts": [docker.types.Mount(AGENT_DIR_IN_CONTAINER, str(path), type="bind")]}
    return {"volumes": {str(path): {"bind": AGENT_DIR_IN_CONTAINER, "mode": "rw"}}}


def _env_value(attrs: dict[str, Any], name: str) -> str:
    for item in (attrs.get("Config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        if key == name:
            return value
    return ""


def engine_error(exc: Exception) -> EngineUnavailable:
    """The engine failed to answer (or its disk is full): say which cause, when known."""
    fault = classify(str(exc))
    return EngineUnavailable(fault.message if fault else None)


class DockerBackend(Backend):
    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="docker")
        self.prefix = settings.SANDBOX_NAME_PREFIX
        self.run_dir = Path(settings.SANDBOX_RUN_DIR)
        self._isolated: dict[str, float] = {}  # bridge -> when its rules were last checked
        self._guarded: dict[str, float] = {}  # network -> when _start last checked it
        self._network_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=60)
            except docker.errors.DockerException as exc:
                raise engine_error(exc) from exc
        return self._client

    async def _run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, partial(func, *args, **kwargs))
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            answered = isinstance(exc, docker.errors.APIError) and exc.status_code is not None
            if answered and classify(str(exc)) is not DISK_FULL:
                raise
            raise engine_error(exc) from exc

    def names(self, sandbox_id: str) -> dict[str, str]:
        return {
            "container": f"{self.prefix}-{sandbox_id}",
            "volume": f"{self.prefix}-{sandbox_id}-workspace",
            "network": f"{self.prefix}-net",
        }

    def labels(self, spec: SandboxSpec) -> dict[str, str]:
        return {
            f"{LABEL}.managed": "true",
            f"{LABEL}.prefix": self.prefix,
            f"{LABEL}.deployment": settings.SANDBOX_DEPLOYMENT,
            f"{LABEL}.sandbox-id": spec.sandbox_id,
            f"{LABEL}.owner-id": str(spec.owner_id),
            **spec.labels,
        }

    # ------------------------------------------------------------------ interface

    async def ping(self) -> None:
        await self._run(lambda: self.client.ping())

    async def create(self, spec: SandboxSpec) -> BackendState:
        return await self._run(self._create, spec)

    def _create(self, spec: SandboxSpec) -> BackendState:
        names = self.names(spec.sandbox_id)
        labels = self.labels(spec)
        agent_dir = self._make_agent_dir(spec.sandbox_id)
        key = secrets.token_hex(32)
        try:
            image = self.client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            if spec.snapshot or spec.image.startswith(f"{self.prefix}-snapshot:"):
                raise SandboxUnavailable(
                    f"The image of the snapshot this sandbox was made from ({spec.image}) "
                    "is gone: the snapshot was deleted. Make a new sandbox, or restore this "
                    "one from a snapshot that still exists."
                ) from None
            raise SandboxUnavailable(
                f"The sandbox image {spec.image} is missing: build it with "
                "`python manage.py build_sandbox_image` (make run does this)."
            ) from None
        try:
            self.client.volumes.get(names["volume"])
        except docker.errors.NotFound:
            with contextlib.suppress(docker.errors.APIError):
                self.client.volumes.create(name=names["volume"], labels=labels)
            if spec.snapshot:  # only a new volume: a repeated create keeps what is there
                self._copy_volume(spec.snapshot["volume"], names["volume"], image.id)
        memory, cpus = resource_limits(spec)
        network, egress_detail = self.network_for(spec)
        # A container without a network cannot publish a port: its agent keeps the
        # socket, which works on this host alone.
        tcp = settings.SANDBOX_AGENT_TRANSPORT == "tcp" and network is not None
        kwargs: dict[str, Any] = {
            "image": image.id,
            "name": names["container"],
            "hostname": "sandbox",
            "labels": labels,
            # SANDBOX_AGENT_* is the agent's own: the programs it runs never see it, and
            # the API refuses it in a tenant's env (reserved_env). Ours come last.
            "environment": {
                **spec.env,
                **agent_environment(
                    spec, key, image.labels.get(f"{LABEL}.tenant-env", ""), tcp=tcp
                ),
            },
            # root only for the agent, which drops to the sandbox user at once and runs
            # every program as that user (see container/agent/identity.py)
            "user": "0:0",
            "working_dir": "/workspace",
            "cap_drop": ["ALL"],
            "cap_add": ["SETUID", "SETGID", "SETPCAP"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": settings.SANDBOX_PIDS_LIMIT,
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(cpus * 1e9),
            "ipc_mode": "private",
            # Never started by the engine on its own (after a reboot, before the server
            # has put the firewall rules back): only _start does, which checks them.
            "restart_policy": {"Name": "no"},
            "log_config": docker.types.LogConfig(
                type="json-file",
                config={
                    "max-size": settings.SANDBOX_LOG_MAX_SIZE,
                    "max-file": str(settings.SANDBOX_LOG_MAX_FILE),
                },
            ),
        }
        binding = agent_dir_binding(agent_dir)
        kwargs["mounts"] = [
            docker.types.Mount("/workspace", names["volume"], type="volume"),
            *binding.pop("mounts", []),
        ]
        kwargs.update(binding)
        if network is None:
            kwargs["network_mode"] = "none"
        else:
            kwargs["network"] = network
        if tcp:
            # The host's loopback only: never an address other hosts (or the
            # sandboxes' bridge) can reach.
            kwargs["ports"] = {f"{AGENT_TCP_PORT}/tcp": ("127.0.0.1", None)}
        if settings.SANDBOX_RUNTIME:
            kwargs["runtime"] = settings.SANDBOX_RUNTIME
        try:
            container = self.client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: it exists already (a repeated create)
                fault = classify(str(exc))
                message = fault.message if fault else f"Docker could not create the sandbox: {exc}"
                raise SandboxUnavailable(message) from exc
            container = self.client.containers.get(names["container"])
            key = _env_value(container.attrs, "SANDBOX_AGENT_KEY")
        return {
            "container_id": container.id,
            "container": names["container"],
            "volume": names["volume"],
            "agent_dir": str(agent_dir),
            "agent_key": key,
            "agent_transport": agent_transport(container.attrs),
            "egress_detail": egress_detail,
            "network": network or "",
        }

    def network_for(self, spec: SandboxSpec) -> tuple[str | None, str]:
        """The network a new container joins (None: no network but loopback) and, when
        it gets less than it asked for, a sentence saying why (``egress_detail``).

        Fails closed: egress "all" without the firewall rules would let the sandbox
        reach the host, the LAN and cloud metadata, so it gets no network instead.
        """
        if spec.egress == "none":
            return None, ""
        try:
            return self._ensure_network(self.names(spec.sandbox_id)["network"]), ""
        except isolation.FirewallUnavailable as exc:
            log.error("sandbox %s gets no network: %s", spec.sandbox_id, exc)
            return None, (
                "No network: the host firewall rules that keep sandboxes off the host and "
                f"private networks could not be installed ({exc}). Run the server as root "
                "with iptables, or set SANDBOX_BLOCK_PRIVATE_NETWORKS=false to give "
                "sandboxes an unguarded network."
            )

    def _ensure_network(self, name: str) -> str:
        """The sandboxes' bridge: no traffic between sandboxes (ICC off), and none to
        the host or private and link-local ranges (see ``isolation``).

        Raises ``isolation.FirewallUnavailable`` when those rules cannot be installed.
        The rules are checked again every ``RULES_RECHECK`` seconds, so rules flushed
        under a running server come back with the next sandbox.
        """
        # Many sandboxes created at once (a class joining) must make the network
        # once: serialised here, and another server process racing us is waited for.
        with self._network_lock:
            network = self._network(name)
            if not settings.SANDBOX_BLOCK_PRIVATE_NETWORKS:
                return name
            bridge = self._bridge(network)
            checked = self._isolated.get(bridge)
            if checked is None or time.monotonic() - checked > RULES_RECHECK:
                isolation.isolate_bridge(bridge, bool(network.attrs.get("EnableIPv6")))
                self._isolated[bridge] = time.monotonic()
        return name

    def build_network(self) -> str:
        """The network for build steps of a tenant's image (template Dockerfiles):
        the sandboxes' own, behind the same firewall (no host, private ranges or
        metadata, no other sandbox), never the engine's default bridge. Raises
        ``isolation.FirewallUnavailable`` as a sandbox start would."""
        return self._ensure_network(self.names("")["network"])

    @staticmethod
    def _bridge(network: Any) -> str:
        """The interface the engine really uses (a network made elsewhere has its own)."""
        options = network.attrs.get("Options") or {}
        return str(options.get("com.docker.network.bridge.name") or f"br-{network.id[:12]}")

    def _network(self, name: str) -> Any:
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.client.networks.get(name)
            except docker.errors.NotFound:
                pass
            try:
                return self.client.networks.create(
                    name,
                    driver="bridge",
                    enable_ipv6=False,  # IPv4 only: the firewall rules are IPv4 rules
                    labels={f"{LABEL}.managed": "true", f"{LABEL}.prefix": self.prefix},
                    options={
                        "com.docker.network.bridge.enable_icc": "false",
                        "com.docker.network.bridge.name": bridge_name(self.prefix),
                    },
                )
            except docker.errors.APIError as exc:  # being created by another process
                if time.monotonic() > deadline:
                    raise SandboxUnavailable(
                        f"Could not create the sandboxes' network {name}: {exc.explanation}"
                    ) from None
                time.sleep(0.2)

    def _make_agent_dir(self, sandbox_id: str) -> Path:
        """The directory only this sandbox's agent and the server share.

        Owned by root with mode 0700: the sandbox user can neither enter it (to dial
        the agent) nor write to it (to plant a link to another sandbox's socket, or
        to fill the host's disk). A server that is not root cannot make a directory
        root's; the engine then creates it (root's, 0755) when the container starts,
        and the agent's key keeps the user from talking to the socket inside.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)  # other host users cannot reach any socket below
        path = self.run_dir / sandbox_id
        if os.geteuid() == 0:
            path.mkdir(exist_ok=True)
            os.chown(path, 0, 0)
            path.chmod(0o700)
        return path

    async def start(self, state: BackendState) -> BackendState:
        return await self._run(self._start, state)

    def _start(self, state: BackendState) -> BackendState:
        """Start or unpause; with the tcp transport, the agent's port as the engine
        published it this time (a start gives a new one; an unpause keeps it)."""
        container = self._container(state)  # just inspected: no reload() needed
        if container.attrs["State"].get("Paused"):
            container.unpause()
        elif container.status != "running":
            self._guard_networks(container)
            self._make_agent_dir(Path(state["agent_dir"]).name)
            with contextlib.suppress(FileNotFoundError):
                (Path(state["agent_dir"]) / AGENT_SOCKET).unlink()
            container.start()
            if state.get("agent_transport") == "tcp":
                container.reload()
        if state.get("agent_transport") != "tcp":
            return {}
        return {"agent_port": published_port(container.attrs)}

    async def remove_container(self, state: BackendState) -> None:
        await self._run(self._remove_container, state)

    def _remove_container(self, state: BackendState) -> None:
        try:
            self.client.containers.get(state["container"]).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
        self._release_egress(state)

    def _guard_networks(self, container: Any) -> None:
        """Before a container joins the sandboxes' network again, its firewall rules
        must be in (a host reboot loses them): fail closed with a sentence if they
        cannot be. Checked at most every RULES_RECHECK seconds per process."""
        network = self.names("")["network"]
        attached = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        last = self._guarded.get(network)
        if network not in attached or (last and time.monotonic() - last < RULES_RECHECK):
            return
        try:
            self._ensure_network(network)
        except isolation.FirewallUnavailable as exc:
            raise SandboxUnavailable(
                "The sandbox cannot start: the host firewall rules that keep sandboxes off "
                f"the host and private networks could not be installed ({exc})."
            ) from None
        self._guarded[network] = time.monotonic()

    async def stop(self, state: BackendState) -> None:
        await self._run(self._stop, state)

    def _stop(self, state: BackendState) -> None:
        container = self._container(state)
        container.reload()
        if container.attrs["State"].get("Paused"):
            container.unpause()
        if container.attrs["State"].get("Running"):
            container.stop(timeout=3)
        self._release_egress(state)

    async def pause(self, state: BackendState) -> None:
        await self._run(self._pause, state)

    def _pause(self, state: BackendState) -> None:
        container = self._container(state)
        container.reload()
        if container.status == "running" and not container.attrs["State"].get("Paused"):
            container.pause()

    async def remove(self, state: BackendState) -> None:
        await self._run(self._remove, state)

    def _remove(self, state: BackendState) -> None:
        image_id = ""
        with contextlib.suppress(docker.errors.NotFound):
            image_id = self.client.containers.get(state["container"]).attrs.get("Image", "")
        removers: tuple[Callable[[], None], ...] = (
            lambda: self.client.containers.get(state["container"]).remove(force=True),
            lambda: self.client.volumes.get(state["volume"]).remove(force=True),
        )
        for remove in removers:
            try:
                remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    raise
        if state.get("agent_dir"):
            shutil.rmtree(state["agent_dir"], ignore_errors=True)
        self._release_egress(state)
        if image_id:
            self._drop_deleted_snapshot_image(image_id)

    def _drop_deleted_snapshot_image(self, image_id: str) -> None:
        """A deleted snapshot's image stays (untagged) while sandboxes made from it
        live; the last of them to go takes it along."""
        try:
            image = self.client.images.get(image_id)
        except docker.errors.NotFound:
            return
        if image.labels.get(f"{LABEL}.snapshot-id") and not image.tags:
            with contextlib.suppress(docker.errors.APIError):  # 409: still in use
                self.client.images.remove(image_id)

    async def apply_egress(
        self, state: BackendState, mode: str, networks: Sequence[str]
    ) -> BackendState:
        return await self._run(self._apply_egress, state, mode, list(networks))

    def _apply_egress(self, state: BackendState, mode: str, networks: list[str]) -> BackendState:
        """Install the sandbox's own rules (``egress_rules``) for its current address.

        Fails closed: when an allow-list cannot be installed the container is
        stopped, since it would otherwise run with the whole public internet.
        """
        container = self._container(state)
        attached = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        network = attached.get(self.names("")["network"]) or {}
        address, gateway = network.get("IPAddress") or "", network.get("Gateway") or ""
        if not network or not settings.SANDBOX_BLOCK_PRIVATE_NETWORKS:
            if mode == "all" or (not network and mode == "none"):
                return {"egress_address": address, "egress_proxy": ""}
            raise SandboxUnavailable(
                "Egress allow-lists need the sandboxes' firewall, which is off "
                "(SANDBOX_BLOCK_PRIVATE_NETWORKS=false)."
                if network
                else "This sandbox was created with egress none and has no network "
                "interface: create a new sandbox to give it a network."
            )
        chain = egress_rules.chain_name(state["container"])
        try:
            if not address:  # not running: the next start applies the rules
                egress_rules.release(chain)
                return {"egress_address": "", "egress_proxy": ""}
            if mode == "all":
                egress_rules.clear(address, chain)
                return {"egress_address": address, "egress_proxy": ""}
            port = int(settings.SANDBOX_EGRESS_PROXY_PORT)
            egress_rules.install(
                egress_rules.SandboxRules(
                    chain=chain,
                    bridge=self._bridge(self.client.networks.get(self.names("")["network"])),
                    address=address,
                    gateway=gateway,
                    proxy_port=port,
                    mode=mode,
                    networks=[n for n in networks if ":" not in n],
                )
            )
        except isolation.FirewallUnavailable as exc:
            if mode != "all":
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
            raise SandboxUnavailable(
                f"The sandbox's egress rules could not be installed ({exc}); it was stopped "
                "rather than left with more network than it asked for."
            ) from None
        proxy = f"http://{gateway}:{port}" if mode == "allow" else ""
        return {"egress_address": address, "egress_proxy": proxy}

    def _release_egress(self, state: BackendState) -> None:
        if settings.SANDBOX_BLOCK_PRIVATE_NETWORKS and state.get("container"):
            with contextlib.suppress(isolation.FirewallUnavailable):
                egress_rules.release(egress_rules.chain_name(state["container"]))

    async def egress_proxy_address(self) -> tuple[str, int] | None:
        def address() -> tuple[str, int] | None:
            name = self._ensure_network(self.names("")["network"])
            for config in (self.client.networks.get(name).attrs.get("IPAM") or {}).get(
                "Config"
            ) or []:
                if config.get("Gateway") and ":" not in config["Gateway"]:
                    return config["Gateway"], int(settings.SANDBOX_EGRESS_PROXY_PORT)
            return None

        return await self._run(address)

    async def status(self, state: BackendState) -> Status:
        return await self._run(self._status, state)

    def _status(self, state: BackendState) -> Status:
        try:
            container = self._container(state)
        except SandboxUnavailable:
            return "missing"
        if container.attrs["State"].get("Paused"):
            return "paused"
        return {
            "running": "running",
            "created": "stopped",
            "exited": "stopped",
            "restarting": "running",
        }.get(container.status, "error")  # type: ignore[return-value]

    def agent_address(self, state: BackendState) -> AgentAddress:
        key = bytes.fromhex(state.get("agent_key") or "")
        if state.get("agent_transport") == "tcp":
            return AgentAddress(host="127.0.0.1", port=int(state.get("agent_port") or 0), key=key)
        return AgentAddress(unix_path=str(Path(state["agent_dir"]) / AGENT_SOCKET), key=key)

    # ------------------------------------------------------------------ snapshots

    def snapshot_names(self, snapshot_id: str) -> dict[str, str]:
        return {
            "image": f"{self.prefix}-snapshot:{snapshot_id}",
            "volume": f"{self.prefix}-snapshot-{snapshot_id}",
        }

    async def snapshot(self, state: BackendState, snapshot_id: str, owner_id: int) -> BackendState:
        return await self._run(self._snapshot, state, snapshot_id, owner_id)

    def _snapshot(self, state: BackendState, snapshot_id: str, owner_id: int) -> BackendState:
        """``docker commit`` (the engine pauses the container meanwhile) for the root
        filesystem's changes, then a copy of the workspace volume into a volume of
        the snapshot's own while the sandbox runs again.

        The image keeps the container's configuration (user, entrypoint, working
        directory) but not its agent key, blanked here; new containers get their own.
        The tenant's variables of the time are named in a label, so that a sandbox
        made from the image drops those it does not set itself (``agent_environment``).
        Neither depends on the sandbox's container or volume. The orphan sweep
        removes containers only (``_managed``), and the copy helper carries no
        deployment label, so neither is taken for a sandbox's leftover.
        """
        names = self.snapshot_names(snapshot_id)
        container = self._container(state)
        labels = {
            f"{LABEL}.prefix": self.prefix,
            f"{LABEL}.snapshot-id": snapshot_id,
            f"{LABEL}.owner-id": str(owner_id),
        }
        tenant_env = _env_value(container.attrs, "SANDBOX_AGENT_TENANT_ENV") or "[]"
        repository, tag = names["image"].split(":")
        started = time.monotonic()
        try:
            image = container.commit(
                repository=repository,
                tag=tag,
                pause=True,
                conf={
                    "Env": ["SANDBOX_AGENT_KEY="],
                    "Labels": {**labels, f"{LABEL}.tenant-env": tenant_env},
                },
            )
        except docker.errors.APIError as exc:
            raise SandboxUnavailable(f"Docker could not snapshot the sandbox: {exc}") from exc
        # The engine freezes a running container for the whole commit; a sleeping one
        # (paused or stopped) has nothing to freeze.
        running = container.status == "running" and not container.attrs["State"].get("Paused")
        paused_ms = (time.monotonic() - started) * 1000 if running else 0.0
        snapshot: BackendState = {
            "image": names["image"],
            "image_id": image.id,
            "volume": names["volume"],
            "paused_ms": round(paused_ms, 1),
        }
        try:
            self.client.volumes.create(name=names["volume"], labels=labels)
            workspace = self._copy_volume(state["volume"], names["volume"], image.id)
            base = self.client.images.get(container.attrs["Image"])
            image.reload()
            root = max(0, int(image.attrs.get("Size") or 0) - int(base.attrs.get("Size") or 0))
        except BaseException:
            self._remove_snapshot(snapshot)
            raise
        snapshot["size_bytes"] = workspace + root
        return snapshot

    def _copy_volume(self, source: str, target: str, image: str) -> int:
        """Copy one volume's files into another (owners, modes, links kept) in a
        short-lived helper container; return the bytes copied.

        The helper has no network, only the capabilities ``cp -a`` needs to keep
        owners and modes, the source read-only, and no deployment label (it is no
        sandbox). Symbolic links are copied as links, never followed.
        """
        script = "cp -a /from/. /to/ && du -sb /to | cut -f1"
        kwargs: dict[str, Any] = {
            "image": image,
            "entrypoint": ["/bin/sh", "-c"],
            "command": [script],
            "name": f"{self.prefix}-copy-{secrets.token_hex(4)}",
            "user": "0:0",
            "working_dir": "/",
            "network_mode": "none",
            "cap_drop": ["ALL"],
            "cap_add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": 64,
            "labels": {f"{LABEL}.prefix": self.prefix, f"{LABEL}.helper": "copy"},
            "mounts": [
                docker.types.Mount("/from", source, type="volume", read_only=True),
                docker.types.Mount("/to", target, type="volume"),
            ],
            "remove": True,
            "stdout": True,
            "stderr": True,
        }
        if settings.SANDBOX_RUNTIME:
            kwargs["runtime"] = settings.SANDBOX_RUNTIME
        try:
            output = self.client.containers.run(**kwargs)
        except docker.errors.ContainerError as exc:
            stderr = exc.stderr.decode(errors="replace")[-300:] if exc.stderr else ""
            raise SandboxUnavailable(f"Copying the workspace failed: {stderr}") from None
        try:
            return int(bytes(output).split()[-1])
        except (IndexError, ValueError):
            return 0

    async def remove_snapshot(self, state: BackendState) -> None:
        await self._run(self._remove_snapshot, state)

    def _remove_snapshot(self, state: BackendState) -> None:
        """Untag the image (sandboxes made from it keep using it: the last one to
        go removes it, see ``_drop_deleted_snapshot_image``) and remove the volume."""
        removers: tuple[Callable[[], None], ...] = (
            lambda: self.client.images.remove(state["image"], force=True),
            lambda: self.client.volumes.get(state["volume"]).remove(force=True),
        )
        for remove in removers:
            try:
                remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
        if state.get("image_id"):
            self._drop_deleted_snapshot_image(state["image_id"])

    async def managed(self) -> list[Managed]:
        return await self._run(self._managed)

    def _managed(self) -> list[Managed]:
        found = []
        for container in self.client.containers.list(
            all=True, filters={"label": f"{LABEL}.deployment={settings.SANDBOX_DEPLOYMENT}"}
        ):
            sandbox_id = container.labels.get(f"{LABEL}.sandbox-id", "")
            created = container.attrs.get("Created", "")
            try:
                created_at = datetime.fromisoformat(created[:26].rstrip("Z")).replace(tzinfo=UTC)
            except ValueError:
                created_at = datetime.now(UTC)
            names = self.names(sandbox_id)
            found.append(
                Managed(
                    sandbox_id=sandbox_id,
                    created_at=created_at.timestamp(),
                    state={
                        "container_id": container.id,
                        "container": names["container"],
                        "volume": names["volume"],
                        "agent_dir": str(self.run_dir / sandbox_id),
                        "agent_key": _env_value(container.attrs, "SANDBOX_AGENT_KEY"),
                        "agent_transport": agent_transport(container.attrs),
                        "agent_port": published_port(container.attrs),
                    },
                )
            )
        return found

    def _container(self, state: BackendState) -> Any:
        try:
            return self.client.containers.get(state.get("container") or "")
        except docker.errors.NotFound:
            raise SandboxUnavailable("The sandbox's container no longer exists.") from None

    async def logs(self, state: BackendState, tail: int = 50) -> str:
        """The container's last log lines (the agent's own messages), for diagnostics."""

        def read() -> str:
            try:
                output: bytes = self._container(state).logs(tail=tail)
                return output.decode(errors="replace")
            except SandboxUnavailable:
                return ""

        return await self._run(read)
