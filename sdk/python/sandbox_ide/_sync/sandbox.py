# GENERATED from sandbox_ide/_async/sandbox.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""A sandbox: finding and making one, its lifecycle, and the groups of its calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _api
from .._wire import NO_READ_TIMEOUT
from ..models import Egress, JoinResult, SandboxInfo, StarterUpdate, TemplateInfo
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
        egress: Egress | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> Sandbox:
        """The caller's sandbox called ``name``, made (and started) if it is new.

        With a ``template`` (an id or a template object) a new sandbox gets its image,
        env, limits and starter code, and its setup command is run. ``egress``:
        ``"all"``, ``"none"`` or ``{"allow": [CIDRs and host names]}``.
        """
        body = _api.drop_none(
            name=name,
            template=_api.ref(template) if template is not None else None,
            env=env,
            sleep_after=sleep_after,
            keep_alive=keep_alive,
            egress=egress,
        )
        return cls._create(body, url, token, timeout=NO_READ_TIMEOUT)

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

    # -- terminals ----------------------------------------------------------------------

    def terminal(self, name: str = "main", *, cols: int = 80, rows: int = 24) -> Terminal:
        """An interactive shell (PTY) called ``name``; reconnecting re-attaches to it.

        Use as a context manager, or call ``connect()``; ``send``/``recv`` connect lazily.
        """
        return Terminal(self, name, cols, rows)
