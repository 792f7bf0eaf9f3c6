"""The typed values the SDK returns (built from the API's JSON, tolerant of new fields)."""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# A sandbox's network: "all" (the public internet), "none", or {"allow": [...]}.
Egress = str | dict[str, list[str]]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class ExposedPort:
    """A port reachable from outside at ``url`` (the ``token`` is in the URL), for
    whom ``visibility`` says (``audience`` in one sentence); ``share_url`` is the
    short link to it."""

    port: int
    url: str
    token: str = ""
    name: str = ""
    visibility: str = "public"
    audience: str = ""
    expires_at: datetime | None = None
    ended: str | None = None  # "expired" or "revoked" once a share ended that way
    share_url: str = ""

    @property
    def private(self) -> bool:
        """Whether opening it needs a login (any level but public)."""
        return self.visibility != "public"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExposedPort:
        return cls(
            port=int(data["port"]),
            url=data.get("url", ""),
            token=data.get("token", ""),
            name=data.get("name") or "",
            visibility=data.get("visibility") or ("private" if data.get("private") else "public"),
            audience=data.get("audience") or "",
            expires_at=_time(data.get("expires_at")),
            ended=data.get("ended"),
            share_url=data.get("share_url") or "",
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
    # "all", "none" or {"allow": [...]}
    egress: Egress = "all"

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
            egress=data.get("egress") or "all",
        )


@dataclass
class SnapshotInfo:
    """A sandbox's files (workspace and installed packages) kept at one moment; it
    outlives the sandbox (``sandbox`` is that sandbox's id)."""

    id: str
    name: str
    sandbox: str = ""
    size_bytes: int = 0
    created_at: datetime | None = None
    paused_ms: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotInfo:
        return cls(
            id=data["id"],
            name=data.get("name", ""),
            sandbox=data.get("sandbox", ""),
            size_bytes=int(data.get("size_bytes") or 0),
            created_at=_time(data.get("created_at")),
            paused_ms=float(data.get("paused_ms") or 0),
        )


@dataclass
class ForkError:
    """Why one fork (``index``, from 0) was not made: the error's code and sentence."""

    index: int
    code: str
    message: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForkError:
        return cls(
            index=int(data.get("index") or 0),
            code=data.get("code", ""),
            message=data.get("message", ""),
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


# -- classroom: templates, courses, invites, roster, archives, shares -----------------------


@dataclass
class TemplateInfo:
    """A template: the recipe a sandbox (or a course's sandboxes) is made from."""

    id: str
    name: str
    description: str = ""
    image: str = ""
    repo_url: str = ""
    repo_branch: str = ""
    setup_command: str = ""
    dockerfile: str = ""
    built_image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    open_files: list[str] = field(default_factory=list)
    preview_port: int | None = None
    warm_pool: int = 0
    starter_head: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TemplateInfo:
        port = data.get("preview_port")
        return cls(
            id=data["id"],
            name=data.get("name", ""),
            description=data.get("description") or "",
            image=data.get("image") or "",
            repo_url=data.get("repo_url") or "",
            repo_branch=data.get("repo_branch") or "",
            setup_command=data.get("setup_command") or "",
            dockerfile=data.get("dockerfile") or "",
            built_image=data.get("built_image") or "",
            env=dict(data.get("env") or {}),
            limits=dict(data.get("limits") or {}),
            open_files=list(data.get("open_files") or []),
            preview_port=int(port) if port is not None else None,
            warm_pool=int(data.get("warm_pool") or 0),
            starter_head=data.get("starter_head") or "",
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
        )


@dataclass
class BuildInfo:
    """A build of a template's Dockerfile. ``status``: queued, running, succeeded or
    failed; on failure ``error`` says why, and when a step failed ``failed_step`` is
    its line and ``last_lines`` its last lines of output."""

    id: str
    template: str
    status: str
    image: str = ""
    reused: bool = False
    step: int = 0
    steps: int = 0
    step_text: str = ""
    error: str = ""
    failed_step: str = ""
    last_lines: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildInfo:
        return cls(
            id=data["id"],
            template=data.get("template") or "",
            status=data.get("status") or "",
            image=data.get("image") or "",
            reused=bool(data.get("reused")),
            step=int(data.get("step") or 0),
            steps=int(data.get("steps") or 0),
            step_text=data.get("step_text") or "",
            error=data.get("error") or "",
            failed_step=data.get("failed_step") or "",
            last_lines=list(data.get("last_lines") or []),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
        )


@dataclass
class StarterConflict:
    """A file both the student and the new starter changed: the student's version
    stays at ``path``; the starter's is beside it at ``kept_as``."""

    path: str
    kept_as: str | None = None
    reason: str = ""


@dataclass
class StarterUpdate:
    """How merging the newest starter into a workspace went.

    ``status``: ``updated``, ``up_to_date`` or (in a course update) ``failed`` with
    ``error``; ``student`` is set in a course update's report.
    """

    status: str
    head: str = ""
    commit: str | None = None
    updated: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    conflicts: list[StarterConflict] = field(default_factory=list)
    saved_work: bool = False
    error: str = ""
    student: str = ""
    at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("updated", "up_to_date")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StarterUpdate:
        return cls(
            status=data.get("status", ""),
            head=data.get("head") or "",
            commit=data.get("commit"),
            updated=list(data.get("updated") or []),
            restored=list(data.get("restored") or []),
            conflicts=[
                StarterConflict(
                    path=c.get("path", ""), kept_as=c.get("kept_as"), reason=c.get("reason") or ""
                )
                for c in data.get("conflicts") or []
            ],
            saved_work=bool(data.get("saved_work")),
            error=data.get("error") or "",
            student=data.get("student") or "",
            at=_time(data.get("at")),
        )


@dataclass
class CourseUpdate:
    """The answer to ``course.push_update()``: each student's merge report."""

    starter_head: str
    students: list[StarterUpdate] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CourseUpdate:
        return cls(
            starter_head=data.get("starter_head") or "",
            students=[StarterUpdate.from_json(s) for s in data.get("students") or []],
        )


@dataclass
class CourseInfo:
    """A course as the server describes it; ``role`` is yours in it (teacher or student)."""

    id: str
    name: str
    role: str = ""
    teacher: str = ""
    template_id: str = ""
    template_name: str = ""
    open_files: list[str] = field(default_factory=list)
    preview_port: int | None = None
    created_at: datetime | None = None

    @property
    def is_teacher(self) -> bool:
        return self.role == "teacher"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CourseInfo:
        template = data.get("template") or {}
        port = template.get("preview_port")
        return cls(
            id=data["id"],
            name=data.get("name", ""),
            role=data.get("role", ""),
            teacher=data.get("teacher", ""),
            template_id=template.get("id", ""),
            template_name=template.get("name", ""),
            open_files=list(template.get("open_files") or []),
            preview_port=int(port) if port is not None else None,
            created_at=_time(data.get("created_at")),
        )


@dataclass
class Invite:
    """An invite link. ``url`` is the page a student opens; ``token`` is what
    ``Course.join(token)`` takes. ``state``: active, expired or revoked."""

    id: int
    token: str
    url: str = ""
    state: str = ""
    expires_at: datetime | None = None
    uses: int = 0
    created_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"

    @classmethod
    def from_json(cls, data: dict[str, Any], base_url: str = "") -> Invite:
        path = data.get("path") or f"/join/{data['token']}/"
        return cls(
            id=int(data["id"]),
            token=data["token"],
            url=base_url.rstrip("/") + path,
            state=data.get("state", ""),
            expires_at=_time(data.get("expires_at")),
            uses=int(data.get("uses") or 0),
            created_at=_time(data.get("created_at")),
        )


@dataclass
class InviteDetails:
    """What an invite link leads to (``Course.invite_details(token)``)."""

    course: str
    course_name: str
    teacher: str
    expires_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InviteDetails:
        return cls(
            course=data["course"],
            course_name=data.get("course_name", ""),
            teacher=data.get("teacher", ""),
            expires_at=_time(data.get("expires_at")),
        )


@dataclass
class JoinResult:
    """How ``Course.join`` went: ``created`` is False when you had joined before."""

    course: str
    sandbox: str
    created: bool = False
    from_pool: bool = False
    ide_path: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JoinResult:
        return cls(
            course=data["course"],
            sandbox=data["sandbox"],
            created=bool(data.get("created")),
            from_pool=bool(data.get("from_pool")),
            ide_path=data.get("ide_path", ""),
        )


@dataclass
class Student:
    """One row of a course's roster: the student and their sandbox (``sandbox_id``
    is empty until they have one). ``last_update`` is their last starter update."""

    id: int
    username: str
    joined_at: datetime | None = None
    sandbox_id: str = ""
    sandbox_name: str = ""
    status: str = ""
    sleep_tier: str = ""
    last_active_at: datetime | None = None
    starter_head: str = ""
    last_update: StarterUpdate | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Student:
        student = data.get("student") or {}
        box = data.get("sandbox") or {}
        update = data.get("last_update")
        return cls(
            id=int(student["id"]),
            username=student.get("username", ""),
            joined_at=_time(data.get("joined_at")),
            sandbox_id=box.get("id", ""),
            sandbox_name=box.get("name", ""),
            status=box.get("status", ""),
            sleep_tier=box.get("sleep_tier") or "",
            last_active_at=_time(box.get("last_active_at")),
            starter_head=data.get("starter_head") or "",
            last_update=StarterUpdate.from_json(update) if update else None,
        )


@dataclass
class Archive:
    """A student's workspace as it was before a reset (a .tar.gz on the server)."""

    id: int
    size: int = 0
    created_at: datetime | None = None
    path: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Archive:
        return cls(
            id=int(data["id"]),
            size=int(data.get("size") or 0),
            created_at=_time(data.get("created_at")),
            path=data.get("path", ""),
        )


@dataclass
class Share:
    """Something a student shows the class: a read-only ``view`` of a sandbox, or a
    ``preview`` URL of one of its ports."""

    id: int
    kind: str
    sandbox: str
    owner: str = ""
    port: int | None = None
    url: str | None = None
    created_at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Share:
        port = data.get("port")
        return cls(
            id=int(data["id"]),
            kind=data.get("kind", ""),
            sandbox=data.get("sandbox", ""),
            owner=data.get("owner", ""),
            port=int(port) if port is not None else None,
            url=data.get("url"),
            created_at=_time(data.get("created_at")),
        )


@dataclass
class TutorialCheck:
    """One press of Check: the step, whether its verify script passed (exit 0), what
    it printed (bounded), and where the learner is now (``current``)."""

    step: int
    passed: bool
    output: str = ""
    current: int = 0
    finished: bool = False
    at: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TutorialCheck:
        return cls(
            step=int(data["step"]),
            passed=bool(data["passed"]),
            output=data.get("output", ""),
            current=int(data.get("current", 0)),
            finished=bool(data.get("finished", False)),
            at=_time(data.get("at")),
        )


@dataclass
class TutorialStepInfo:
    """A step of a tutorial as listed: its number (from 1), title and whether it is done."""

    index: int
    title: str
    done: bool = False
    verify: bool = False
    last_check: TutorialCheck | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TutorialStepInfo:
        last = data.get("last_check")
        return cls(
            index=int(data["index"]),
            title=data.get("title", ""),
            done=bool(data.get("done", False)),
            verify=bool(data.get("verify", False)),
            last_check=TutorialCheck.from_json(last) if last else None,
        )


@dataclass
class TutorialInfo:
    """A sandbox's tutorial and the learner's progress: ``current`` is the step they
    are on (``total + 1`` once finished); ``unsupported`` names what the scenario asks
    that this server cannot give."""

    title: str
    steps: list[TutorialStepInfo] = field(default_factory=list)
    current: int = 1
    total: int = 0
    finished: bool = False
    description: str = ""
    unsupported: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TutorialInfo:
        return cls(
            title=data.get("title", ""),
            steps=[TutorialStepInfo.from_json(s) for s in data.get("steps", [])],
            current=int(data.get("current", 1)),
            total=int(data.get("total", 0)),
            finished=bool(data.get("finished", False)),
            description=data.get("description", ""),
            unsupported=list(data.get("unsupported", [])),
            warnings=list(data.get("warnings", [])),
        )


@dataclass
class TutorialPage:
    """One page of a tutorial (0: the intro, 1..N: the steps, N+1: the finish): its
    markdown and the actions of its marked code (``{"index", "kind", "code",
    "interrupt"}``)."""

    index: int
    kind: str
    title: str
    markdown: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    verify: bool = False
    foreground: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TutorialPage:
        return cls(
            index=int(data["index"]),
            kind=data.get("kind", "step"),
            title=data.get("title", ""),
            markdown=data.get("markdown", ""),
            actions=list(data.get("actions", [])),
            verify=bool(data.get("verify", False)),
            foreground=data.get("foreground"),
        )


@dataclass
class TutorialValidation:
    """The validator's report on a template's tutorial: each problem is ``{"file",
    "line", "message", "level"}`` (``error`` stops students from starting it)."""

    found: bool
    valid: bool
    problems: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    title: str = ""
    steps: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TutorialValidation:
        return cls(
            found=bool(data.get("found", False)),
            valid=bool(data.get("valid", False)),
            problems=list(data.get("problems", [])),
            unsupported=list(data.get("unsupported", [])),
            title=data.get("title", ""),
            steps=int(data.get("steps", 0)),
        )
