# GENERATED from sandbox_ide/_async/sandbox.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
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
from .code import Code
from .commands import Commands, Sessions
from .files import Files
from .git import Git
from .http import HTTP
from .ports import Ports
from .processes import Processes
from .resource import Resource
from .terminals import Terminal, Terminals
from .tutorial import Tutorial

if TYPE_CHECKING:
    from .templates import Template


class Sandbox(Resource[SandboxInfo], Commands, Code):
    """A sandbox: one isolated container with a persistent ``/workspace``.

    ``Sandbox.get_or_create("name")`` gets or makes one; ``files``, ``git``,
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
    """Set on the sandbox ``Course.join`` returns: how the join went."""

    def __init__(self, info: SandboxInfo, http: HTTP) -> None:
        super().__init__(info, http)
        self.files = Files(self)
        self.git = Git(self)
        self.processes = Processes(self)
        self.ports = Ports(self)
        self.terminals = Terminals(self)
        self.sessions = Sessions(self)
        self.tutorial = Tutorial(self)

    @classmethod
    def _info(cls, data: Any) -> SandboxInfo:
        return SandboxInfo.from_json(data)

    @property
    def status(self) -> str:
        return self.info.status

    # -- finding and making sandboxes -------------------------------------------------

    @classmethod
    def get_or_create(
        cls,
        name: str | None = None,
        template: Template | TemplateInfo | str | None = None,
        env: dict[str, str] | None = None,
        sleep_after: int | None = None,
        keep_alive: bool | None = None,
        *,
        snapshot: SnapshotInfo | str | None = None,
        egress: Egress | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> Sandbox:
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
        return cls._create(body, url, token, timeout=NO_READ_TIMEOUT)

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        snapshot: SnapshotInfo | str | None = None,
        template: Template | TemplateInfo | str | None = None,
        env: dict[str, str] | None = None,
        sleep_after: int | None = None,
        keep_alive: bool | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> Sandbox:
        """A new sandbox (a generated name when ``name`` is None), from a ``snapshot``
        or a ``template`` if given; an existing ``name`` answers that sandbox."""
        return cls.get_or_create(
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
    def connect(
        cls, sandbox_id: str, *, url: str | None = None, token: str | None = None
    ) -> Sandbox:
        """An existing sandbox by id."""
        return cls._by_id(sandbox_id, url, token)

    # -- lifecycle ----------------------------------------------------------------------

    def update(
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
        self.info = SandboxInfo.from_json(self._http.json("PATCH", self._path, json=body))
        return self.info

    def sleep(self) -> SandboxInfo:
        """Hibernate now; the workspace is kept and any later call wakes it."""
        data = self._http.json("POST", self._path + "/sleep", timeout=NO_READ_TIMEOUT)
        self.info = SandboxInfo.from_json(data)
        return self.info

    def wake(self) -> SandboxInfo:
        data = self._http.json("POST", self._path + "/wake", timeout=NO_READ_TIMEOUT)
        self.info = SandboxInfo.from_json(data)
        return self.info

    def destroy(self) -> None:
        """Remove the container and its workspace for good, then close the client."""
        self._delete(timeout=NO_READ_TIMEOUT)

    def update_starter(self) -> StarterUpdate:
        """Merge the newest starter code of the sandbox's template into ``/workspace``.

        Your work is committed first and never overwritten: a file both you and the
        starter changed keeps your version, with the starter's beside it
        (``report.conflicts``). InvalidRequestError (``no_template``) for a sandbox
        not made from a template.
        """
        data = self._http.json("POST", self._path + "/starter/update", timeout=NO_READ_TIMEOUT)
        return StarterUpdate.from_json(data)

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self, name: str | None = None) -> SnapshotInfo:
        """Keep the sandbox's files (``/workspace`` and installed packages) while it
        runs on; its processes are frozen for ``paused_ms`` only. Running programs'
        memory is not kept."""
        data = self._http.json(
            "POST",
            self._path + "/snapshots",
            json=_api.drop_none(name=name),
            timeout=NO_READ_TIMEOUT,
        )
        return SnapshotInfo.from_json(data)

    def snapshots(self) -> builtins.list[SnapshotInfo]:
        """This sandbox's snapshots, newest first."""
        data = self._http.json("GET", self._path + "/snapshots")
        return [SnapshotInfo.from_json(s) for s in data["snapshots"]]

    def fork(self, count: int = 1) -> ForkResult:
        """Snapshot the sandbox and start ``count`` (1 to 10) copies of it; each copy
        succeeds or fails on its own (``result.errors``). Close the copies (or use
        them with ``with``) when done."""
        data = self._http.json(
            "POST", self._path + "/fork", json={"count": count}, timeout=NO_READ_TIMEOUT
        )
        return ForkResult(
            snapshot=SnapshotInfo.from_json(data["snapshot"]),
            sandboxes=[
                Sandbox(SandboxInfo.from_json(s), HTTP(self._http.url, self._http.token))
                for s in data["sandboxes"]
            ],
            errors=[ForkError.from_json(e) for e in data["errors"]],
        )

    def restore(self, snapshot: SnapshotInfo | str) -> SandboxInfo:
        """Roll the sandbox back to one of your snapshots: its files and installed
        packages become the snapshot's; running programs end, the id stays."""
        data = self._http.json(
            "POST",
            self._path + "/restore",
            json={"snapshot": _api.ref(snapshot)},
            timeout=NO_READ_TIMEOUT,
        )
        self.info = SandboxInfo.from_json(data)
        return self.info

    @staticmethod
    def list_snapshots(
        *, url: str | None = None, token: str | None = None
    ) -> builtins.list[SnapshotInfo]:
        """All your snapshots, those of deleted sandboxes too."""
        http = HTTP(url, token)
        try:
            data = http.json("GET", "/snapshots")
        finally:
            http.close()
        return [SnapshotInfo.from_json(s) for s in data["snapshots"]]

    @staticmethod
    def delete_snapshot(
        snapshot: SnapshotInfo | str, *, url: str | None = None, token: str | None = None
    ) -> None:
        """Remove a snapshot of yours; sandboxes made from it keep their files."""
        http = HTTP(url, token)
        try:
            http.request("DELETE", _api.path("snapshots", _api.ref(snapshot)))
        finally:
            http.close()

    # -- terminals ----------------------------------------------------------------------

    def terminal(self, name: str = "main", *, cols: int = 80, rows: int = 24) -> Terminal:
        """An interactive shell (PTY) called ``name``; reconnecting re-attaches to it.

        Use as a context manager, or call ``connect()``; ``send``/``recv`` connect lazily.
        """
        return Terminal(self, name, cols, rows)


@dataclass
class ForkResult:
    """What ``sandbox.fork()`` made: the snapshot, the copies that started and why the
    others did not."""

    snapshot: SnapshotInfo
    sandboxes: builtins.list[Sandbox] = field(default_factory=builtins.list)
    errors: builtins.list[ForkError] = field(default_factory=builtins.list)
