"""The typed values the SDK returns (built from the API's JSON, tolerant of new fields)."""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class ExposedPort:
    """A port reachable from outside at ``url`` (the ``token`` is in the URL)."""

    port: int
    url: str
    token: str = ""
    name: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExposedPort:
        return cls(
            port=int(data["port"]),
            url=data.get("url", ""),
            token=data.get("token", ""),
            name=data.get("name") or "",
        )


@dataclass
class PortList:
    exposed: list[ExposedPort]
    listening: list[int]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortList:
        return cls(
            exposed=[ExposedPort.from_json(p) for p in data.get("exposed", [])],
            listening=[int(p) for p in data.get("listening", [])],
        )


@dataclass
class SandboxInfo:
    """A sandbox as the server describes it."""

    id: str
    name: str
    status: str
    created_at: datetime | None = None
    last_active_at: datetime | None = None
    sleep_after: int = 0
    keep_alive: bool = False
    image: str = ""
    template: str = ""
    env: dict[str, str] = field(default_factory=dict)
    ports: list[ExposedPort] = field(default_factory=list)
    status_detail: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        return cls(
            id=data["id"],
            name=data["name"],
            status=data.get("status", ""),
            created_at=_time(data.get("created_at")),
            last_active_at=_time(data.get("last_active_at")),
            sleep_after=int(data.get("sleep_after") or 0),
            keep_alive=bool(data.get("keep_alive")),
            image=data.get("image", ""),
            template=data.get("template", ""),
            env=dict(data.get("env") or {}),
            ports=[ExposedPort.from_json(p) for p in data.get("ports") or []],
            status_detail=data.get("status_detail", ""),
        )


@dataclass
class CommandResult:
    """What a command did. ``exit_code`` is None when it timed out."""

    stdout: str
    stderr: str
    exit_code: int | None
    success: bool
    timed_out: bool = False
    duration_ms: float = 0.0
    truncated: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any], stdout: str = "", stderr: str = "") -> CommandResult:
        return cls(
            stdout=data.get("stdout", stdout),
            stderr=data.get("stderr", stderr),
            exit_code=data.get("exit_code"),
            success=bool(data.get("success")),
            timed_out=bool(data.get("timed_out")),
            duration_ms=float(data.get("duration_ms") or 0),
            truncated=bool(data.get("truncated")),
        )


@dataclass
class FileEntry:
    name: str
    path: str
    type: str  # "file" | "directory" | "symlink"
    size: int = 0
    modified: datetime | None = None

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        modified = data.get("modified")
        if isinstance(modified, int | float):
            from datetime import UTC

            when: datetime | None = datetime.fromtimestamp(modified, UTC)
        else:
            when = _time(modified)
        return cls(
            name=data.get("name", ""),
            path=data.get("path", ""),
            type=data.get("type", "file"),
            size=int(data.get("size") or 0),
            modified=when,
        )


@dataclass
class FileEvent:
    """One change seen by ``files.watch()``: ``type`` (create, modify, delete,
    move; also ready and overflow), the ``path`` it concerns, and the raw ``data``."""

    type: str
    path: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sse(cls, event: str, data: Any) -> FileEvent:
        data = data if isinstance(data, dict) else {"data": data}
        kind = data.get("type") or data.get("event") or data.get("action") or event
        return cls(type=str(kind), path=str(data.get("path", "")), data=data)


@dataclass
class WriteResult:
    path: str
    created: bool
    size: int | None = None


@dataclass
class ProcessInfo:
    """A background process (``status``: running or exited)."""

    pid: int
    command: Any
    status: str
    exit_code: int | None = None
    started_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessInfo:
        return cls(
            pid=int(data["pid"]),
            command=data.get("command"),
            status=data.get("status", ""),
            exit_code=data.get("exit_code"),
            started_at=_time(data.get("started_at")),
            raw=data,
        )


@dataclass
class ProcessLogs:
    stdout: str
    stderr: str
    exit_code: int | None = None


@dataclass
class CloneResult:
    path: str
    branch: str | None
    commit: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CloneResult:
        return cls(path=data.get("path", ""), branch=data.get("branch"), commit=data.get("commit"))


@dataclass
class GitFileStatus:
    path: str
    status: str
    staged: bool = False
    unstaged: bool = False


@dataclass
class GitStatus:
    branch: str | None
    commit: str | None
    ahead: int = 0
    behind: int = 0
    files: list[GitFileStatus] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.files

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitStatus:
        return cls(
            branch=data.get("branch"),
            commit=data.get("commit"),
            ahead=int(data.get("ahead") or 0),
            behind=int(data.get("behind") or 0),
            files=[
                GitFileStatus(
                    path=f.get("path", ""),
                    status=f.get("status", ""),
                    staged=bool(f.get("staged")),
                    unstaged=bool(f.get("unstaged")),
                )
                for f in data.get("files") or []
            ],
        )


@dataclass
class GitCommit:
    commit: str
    short: str = ""
    summary: str = ""
    message: str = ""
    author_name: str = ""
    author_email: str = ""
    date: str = ""
    parents: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitCommit:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class GitHead:
    """Where HEAD is after a checkout, commit, pull or push."""

    branch: str | None
    commit: str | None
    summary: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitHead:
        return cls(
            branch=data.get("branch"), commit=data.get("commit"), summary=data.get("summary")
        )


@dataclass
class GitBranches:
    current: str | None
    branches: list[str]
    remote_branches: list[str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitBranches:
        return cls(
            current=data.get("current"),
            branches=[b["name"] for b in data.get("branches") or []],
            remote_branches=[b["name"] for b in data.get("remote_branches") or []],
        )


@dataclass
class SessionInfo:
    """A shell session: execs that name it share its cwd and environment."""

    id: str
    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(
            id=data["id"],
            cwd=data.get("cwd", ""),
            env=dict(data.get("env") or {}),
            created_at=_time(data.get("created_at")),
        )


@dataclass
class CodeContext:
    """A persistent interpreter: state lives on between runs in the same context."""

    id: str
    language: str
    cwd: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CodeContext:
        return cls(id=str(data["id"]), language=data.get("language", ""), cwd=data.get("cwd"))


_MIME = {
    "text": "text/plain",
    "html": "text/html",
    "markdown": "text/markdown",
    "svg": "image/svg+xml",
    "latex": "text/latex",
    "javascript": "application/javascript",
    "json": "application/json",
}


@dataclass
class Result:
    """One rich output of a run. ``png``/``jpeg`` are bytes (decoded from base64);
    ``data`` keeps every MIME type the interpreter produced."""

    data: dict[str, Any] = field(default_factory=dict, repr=False)
    is_main_result: bool = False
    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    svg: str | None = None
    latex: str | None = None
    javascript: str | None = None
    json: Any = None
    png: bytes | None = field(default=None, repr=False)
    jpeg: bytes | None = field(default=None, repr=False)

    def formats(self) -> list[str]:
        return [k for k in ("text", *_MIME, "png", "jpeg") if getattr(self, k, None) is not None]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Result:
        data = dict(raw.get("data", raw)) if isinstance(raw.get("data"), dict) else dict(raw)
        result = cls(data=data, is_main_result=bool(raw.get("is_main_result")))
        for attr, mime in _MIME.items():
            if mime in data:
                value = data[mime]
                if attr == "json" and isinstance(value, str):
                    with contextlib.suppress(ValueError):
                        value = json.loads(value)
                setattr(result, attr, value)
        for attr, mime in (("png", "image/png"), ("jpeg", "image/jpeg")):
            if isinstance(data.get(mime), str):
                setattr(result, attr, base64.b64decode(data[mime]))
        return result


@dataclass
class ExecutionError:
    name: str
    value: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.value}"


@dataclass
class Execution:
    """The outcome of ``run_code``: rich ``results``, ``stdout``/``stderr`` text and
    the ``error`` raised, if any (the run itself does not raise on user errors)."""

    results: list[Result] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    error: ExecutionError | None = None

    @property
    def text(self) -> str | None:
        """The main result's text (the value of the cell's last expression)."""
        for result in self.results:
            if result.is_main_result:
                return result.text
        return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Execution:
        return cls(
            results=[Result.from_json(r) for r in data.get("results") or []],
            stdout=_joined(data.get("stdout")),
            stderr=_joined(data.get("stderr")),
            error=error_from_json(data.get("error")),
        )


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value or ""


def error_from_json(data: Any) -> ExecutionError | None:
    if not data:
        return None
    tb = data.get("traceback", "")
    if isinstance(tb, list):
        tb = "\n".join(tb)
    return ExecutionError(name=data.get("name", ""), value=data.get("value", ""), traceback=tb)


@dataclass
class TerminalInfo:
    name: str
    cols: int = 80
    rows: int = 24
    created_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TerminalInfo:
        return cls(
            name=data["name"],
            cols=int(data.get("cols") or 80),
            rows=int(data.get("rows") or 24),
            created_at=_time(data.get("created_at")),
        )
