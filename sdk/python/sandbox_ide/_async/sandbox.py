"""A sandbox: finding and making one, its lifecycle, and the groups of its calls."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _api
from .._wire import NO_READ_TIMEOUT
from ..models import (
    Egress,
    ForkError,
    JoinResult,
    SandboxInfo,
    SnapshotInfo,
    StarterUpdate,
    TemplateInfo,
)
from .code import AsyncCode
from .commands import AsyncCommands, AsyncSessions
from .files import AsyncFiles
from .git import AsyncGit
from .http import AsyncHTTP
from .ports import AsyncPorts
from .processes import AsyncProcesses
from .resource import AsyncResource
from .terminals import AsyncTerminal, AsyncTerminals
from .tutorial import AsyncTutorial

if TYPE_CHECKING:
    from .templates import AsyncTemplate


class AsyncSandbox(AsyncResource[SandboxInfo], AsyncCommands, AsyncCode):
    """A sandbox: one isolated container with a persistent ``/workspace``.

    ``AsyncSandbox.get_or_create("name")`` gets or makes one; ``files``, ``git``,
    ``processes``, ``ports`` and ``terminals`` group the rest of the API.
    """

    _collection = "sandboxes"
    _repr_fields = ("status",)
    _by_id_too = False
    _missing = (
        "You have no sandbox named {name!r}: create it with "
        "Sandbox.get_or_create({name!r}) or `sandbox-ide create {name}`."
    )

    joined: JoinResult | None = None
    """Set on the sandbox ``AsyncCourse.join`` returns: how the join went."""

    def __init__(self, info: SandboxInfo, http: AsyncHTTP) -> None:
        super().__init__(info, http)
        self.files = AsyncFiles(self)
        self.git = AsyncGit(self)
        self.processes = AsyncProcesses(self)
        self.ports = AsyncPorts(self)
        self.terminals = AsyncTerminals(self)
        self.sessions = AsyncSessions(self)
        self.tutorial = AsyncTutorial(self)

    @classmethod
    def _info(cls, data: Any) -> SandboxInfo:
        return SandboxInfo.from_json(data)

    @property
    def status(self) -> str:
        return self.info.status

    # -- finding and making sandboxes -------------------------------------------------

    @classmethod
    async def get_or_create(
        cls,
        name: str | None = None,
        template: AsyncTemplate | TemplateInfo | str | None = None,
        env: dict[str, str] | None = None,
        sleep_after: int | None = None,
        keep_alive: bool | None = None,
        *,
        snapshot: SnapshotInfo | str | None = None,
        egress: Egress | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> AsyncSandbox:
        """The caller's sandbox called ``name``, made (and started) if it is new.

        With a ``template`` (an id or a template object) a new sandbox gets its image,
        env, limits and starter code, and its setup command is run; with a
        ``snapshot`` (from ``sandbox.snapshot()``, or its id) it gets that snapshot's
        files and installed packages. ``egress``:
        ``"all"``, ``"none"`` or ``{"allow": [CIDRs and host names]}``.
        """
        body = _api.drop_none(
            name=name,
            template=_api.ref(template) if template is not None else None,
            snapshot=_api.ref(snapshot) if snapshot is not None else None,
            env=env,
            sleep_after=sleep_after,
            keep_alive=keep_alive,
            egress=egress,
        )
        return await cls._create(body, url, token, timeout=NO_READ_TIMEOUT)

    @classmethod
    async def create(
        cls,
        name: str | None = None,
        *,
        snapshot: SnapshotInfo | str | None = None,
        template: AsyncTemplate | TemplateInfo | str | None = None,
        env: dict[str, str] | None = None,
        sleep_after: int | None = None,
        keep_alive: bool | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> AsyncSandbox:
        """A new sandbox (a generated name when ``name`` is None), from a ``snapshot``
        or a ``template`` if given; an existing ``name`` answers that sandbox."""
        return await cls.get_or_create(
            name,
            template,
            env,
            sleep_after,
            keep_alive,
            snapshot=snapshot,
            url=url,
            token=token,
        )

    @classmethod
    async def connect(
        cls, sandbox_id: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncSandbox:
        """An existing sandbox by id."""
        return await cls._by_id(sandbox_id, url, token)

    # -- lifecycle ----------------------------------------------------------------------

    async def update(
        self,
        *,
        sleep_after: int | None = None,
        keep_alive: bool | None = None,
        env: dict[str, str] | None = None,
        egress: Egress | None = None,
    ) -> SandboxInfo:
        """Change settings; a new ``egress`` holds at once, for running programs too."""
        body = _api.drop_none(
            sleep_after=sleep_after, keep_alive=keep_alive, env=env, egress=egress
        )
        self.info = SandboxInfo.from_json(await self._http.json("PATCH", self._path, json=body))
        return self.info

    async def sleep(self) -> SandboxInfo:
        """Hibernate now; the workspace is kept and any later call wakes it."""
        data = await self._http.json("POST", self._path + "/sleep", timeout=NO_READ_TIMEOUT)
        self.info = SandboxInfo.from_json(data)
        return self.info

    async def wake(self) -> SandboxInfo:
        data = await self._http.json("POST", self._path + "/wake", timeout=NO_READ_TIMEOUT)
        self.info = SandboxInfo.from_json(data)
        return self.info

    async def destroy(self) -> None:
        """Remove the container and its workspace for good, then close the client."""
        await self._delete(timeout=NO_READ_TIMEOUT)

    async def update_starter(self) -> StarterUpdate:
        """Merge the newest starter code of the sandbox's template into ``/workspace``.

        Your work is committed first and never overwritten: a file both you and the
        starter changed keeps your version, with the starter's beside it
        (``report.conflicts``). InvalidRequestError (``no_template``) for a sandbox
        not made from a template.
        """
        data = await self._http.json(
            "POST", self._path + "/starter/update", timeout=NO_READ_TIMEOUT
        )
        return StarterUpdate.from_json(data)

    # -- snapshots ----------------------------------------------------------------------

    async def snapshot(self, name: str | None = None) -> SnapshotInfo:
        """Keep the sandbox's files (``/workspace`` and installed packages) while it
        runs on; its processes are frozen for ``paused_ms`` only. Running programs'
        memory is not kept."""
        data = await self._http.json(
            "POST",
            self._path + "/snapshots",
            json=_api.drop_none(name=name),
            timeout=NO_READ_TIMEOUT,
        )
        return SnapshotInfo.from_json(data)

    async def snapshots(self) -> builtins.list[SnapshotInfo]:
        """This sandbox's snapshots, newest first."""
        data = await self._http.json("GET", self._path + "/snapshots")
        return [SnapshotInfo.from_json(s) for s in data["snapshots"]]

    async def fork(self, count: int = 1) -> AsyncForkResult:
        """Snapshot the sandbox and start ``count`` (1 to 10) copies of it; each copy
        succeeds or fails on its own (``result.errors``). Close the copies (or use
        them with ``async with``) when done."""
        data = await self._http.json(
            "POST", self._path + "/fork", json={"count": count}, timeout=NO_READ_TIMEOUT
        )
        return AsyncForkResult(
            snapshot=SnapshotInfo.from_json(data["snapshot"]),
            sandboxes=[
                AsyncSandbox(SandboxInfo.from_json(s), AsyncHTTP(self._http.url, self._http.token))
                for s in data["sandboxes"]
            ],
            errors=[ForkError.from_json(e) for e in data["errors"]],
        )

    async def restore(self, snapshot: SnapshotInfo | str) -> SandboxInfo:
        """Roll the sandbox back to one of your snapshots: its files and installed
        packages become the snapshot's; running programs end, the id stays."""
        data = await self._http.json(
            "POST",
            self._path + "/restore",
            json={"snapshot": _api.ref(snapshot)},
            timeout=NO_READ_TIMEOUT,
        )
        self.info = SandboxInfo.from_json(data)
        return self.info

    @staticmethod
    async def list_snapshots(
        *, url: str | None = None, token: str | None = None
    ) -> builtins.list[SnapshotInfo]:
        """All your snapshots, those of deleted sandboxes too."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/snapshots")
        finally:
            await http.aclose()
        return [SnapshotInfo.from_json(s) for s in data["snapshots"]]

    @staticmethod
    async def delete_snapshot(
        snapshot: SnapshotInfo | str, *, url: str | None = None, token: str | None = None
    ) -> None:
        """Remove a snapshot of yours; sandboxes made from it keep their files."""
        http = AsyncHTTP(url, token)
        try:
            await http.request("DELETE", _api.path("snapshots", _api.ref(snapshot)))
        finally:
            await http.aclose()

    # -- terminals ----------------------------------------------------------------------

    def terminal(self, name: str = "main", *, cols: int = 80, rows: int = 24) -> AsyncTerminal:
        """An interactive shell (PTY) called ``name``; reconnecting re-attaches to it.

        Use as a context manager, or call ``connect()``; ``send``/``recv`` connect lazily.
        """
        return AsyncTerminal(self, name, cols, rows)


@dataclass
class AsyncForkResult:
    """What ``sandbox.fork()`` made: the snapshot, the copies that started and why the
    others did not."""

    snapshot: SnapshotInfo
    sandboxes: builtins.list[AsyncSandbox] = field(default_factory=builtins.list)
    errors: builtins.list[ForkError] = field(default_factory=builtins.list)
