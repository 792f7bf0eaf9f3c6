"""API v1: git (docs/api.md, Git), for programs and the IDE's source-control panel.

Every route takes the repository as ``path`` (a directory in it or, for log and
diff, a file in it; default /workspace). Clone, pull and push accept credentials
for that one call (``username`` + ``password``, or ``token``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from django.http import StreamingHttpResponse
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from sandboxes import git, lifecycle, progress

from . import sse
from .auth import AuthedRequest
from .sandboxes import ERRORS
from .schemas import ErrorOut, StrictIn

router = Router(tags=["git"])

GIT_ERRORS = {**ERRORS, 409: ErrorOut}
PathStr = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
RefStr = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^-\s]")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class CredentialsIn(StrictIn):
    username: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    password: Secret | None = None
    token: Secret | None = None

    def credentials(self) -> git.Credentials:
        return git.Credentials(self.username, self.password, self.token)


class CloneIn(CredentialsIn):
    url: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^-\s]")]
    path: PathStr | None = None
    branch: RefStr | None = None
    depth: Annotated[int, Field(ge=1)] | None = None


class CheckoutIn(StrictIn):
    path: PathStr | None = None
    branch: RefStr
    create: bool = False
    start_point: RefStr | None = None


class AddIn(StrictIn):
    path: PathStr | None = None
    paths: list[PathStr] = Field(default_factory=list, max_length=10_000)


class CommitIn(StrictIn):
    path: PathStr | None = None
    message: Annotated[str, StringConstraints(min_length=1, max_length=65536)]
    author_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    author_email: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    all: bool = False
    allow_empty: bool = False


class PullIn(CredentialsIn):
    path: PathStr | None = None
    remote: RefStr | None = None
    branch: RefStr | None = None


class PushIn(PullIn):
    set_upstream: bool = False
    force: bool = False


class CloneOut(Schema):
    path: str
    branch: str | None
    commit: str | None


class FileStatusOut(Schema):
    path: str
    status: str
    staged: bool
    unstaged: bool
    orig_path: str | None = None


class StatusOut(Schema):
    path: str
    branch: str | None
    commit: str | None
    upstream: str | None = None
    ahead: int
    behind: int
    clean: bool
    files: list[FileStatusOut]
    truncated: bool = False


class CommitOut(Schema):
    commit: str
    short: str
    author_name: str
    author_email: str
    date: str
    summary: str
    message: str
    parents: list[str]


class LogOut(Schema):
    commits: list[CommitOut]


class DiffOut(Schema):
    diff: str
    truncated: bool = False


class BranchOut(Schema):
    name: str
    commit: str
    current: bool
    upstream: str | None = None


class RemoteBranchOut(Schema):
    name: str
    commit: str


class BranchesOut(Schema):
    current: str | None
    branches: list[BranchOut]
    remote_branches: list[RemoteBranchOut]


class HeadOut(Schema):
    branch: str | None
    commit: str | None
    summary: str | None = None


def _route(path: str) -> str:
    return f"/sandboxes/{{sandbox_id}}/git/{path}"


@router.post(
    _route("clone"),
    response={200: CloneOut, **GIT_ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "The clone, or with `Accept: text/event-stream` `progress` "
                "events (git's own stages and counts) and one `done` event.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def clone(
    request: AuthedRequest, sandbox_id: str, payload: CloneIn
) -> dict[str, Any] | StreamingHttpResponse:
    """Clone into `path` (default: /workspace/<name of the repository>), which must be
    missing or empty (409 `already_exists`). A bad URL is 400 `git_error` and refused
    credentials 400 `git_auth_failed`, each with git's own reason."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    args = {"url": payload.url, "branch": payload.branch, "depth": payload.depth}
    if sse.wants_stream(request.headers.get("Accept", "")):

        def work(report: progress.Report) -> Awaitable[dict[str, Any]]:
            return git.clone(
                sandbox, payload.path, args, payload.credentials(), report, shape=CloneOut
            )

        return sse.response(sse.progress(progress.follow(work), lambda result: result))
    return await git.run(
        sandbox, "clone", payload.path, args, payload.credentials(), shape=CloneOut
    )


@router.get(_route("status"), response={200: StatusOut, **GIT_ERRORS})
async def status(
    request: AuthedRequest, sandbox_id: str, path: str | None = None
) -> dict[str, Any]:
    """Branch, commit, ahead/behind its upstream and the changed files."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    return await git.run(sandbox, "status", path, shape=StatusOut)


@router.get(_route("log"), response={200: LogOut, **GIT_ERRORS})
async def log(
    request: AuthedRequest,
    sandbox_id: str,
    path: str | None = None,
    limit: Annotated[int, Field(ge=1, le=1000)] = 20,
    file: str | None = None,
) -> dict[str, Any]:
    """The latest commits of HEAD (of one file with `file`, or a `path` to a file)."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    return await git.run(sandbox, "log", path, {"limit": limit, "file": file}, shape=LogOut)


@router.get(_route("diff"), response={200: DiffOut, **GIT_ERRORS})
async def diff(
    request: AuthedRequest,
    sandbox_id: str,
    path: str | None = None,
    staged: bool = False,
    file: str | None = None,
) -> dict[str, Any]:
    """Unstaged changes as a unified diff (`staged=1`: what the next commit holds)."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    return await git.run(sandbox, "diff", path, {"staged": staged, "file": file}, shape=DiffOut)


@router.get(_route("branches"), response={200: BranchesOut, **GIT_ERRORS})
async def branches(
    request: AuthedRequest, sandbox_id: str, path: str | None = None
) -> dict[str, Any]:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    return await git.run(sandbox, "branches", path, shape=BranchesOut)


@router.post(_route("checkout"), response={200: HeadOut, **GIT_ERRORS})
async def checkout(request: AuthedRequest, sandbox_id: str, payload: CheckoutIn) -> dict[str, Any]:
    """Switch to a branch (or ref); `create` makes it first (from `start_point`)."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    args = {"branch": payload.branch, "create": payload.create, "start_point": payload.start_point}
    return await git.run(sandbox, "checkout", payload.path, args, shape=HeadOut)


@router.post(_route("add"), response={200: StatusOut, **GIT_ERRORS})
async def add(request: AuthedRequest, sandbox_id: str, payload: AddIn) -> dict[str, Any]:
    """Stage `paths` (every change when empty); answers the new status."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    return await git.run(sandbox, "add", payload.path, {"paths": payload.paths}, shape=StatusOut)


@router.post(_route("commit"), response={200: HeadOut, **GIT_ERRORS})
async def commit(request: AuthedRequest, sandbox_id: str, payload: CommitIn) -> dict[str, Any]:
    """Commit what is staged (`all`: every tracked change). Without an author and no
    git identity configured the author is "Sandbox User <sandbox@localhost>"."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    args = payload.model_dump(exclude={"path"})
    return await git.run(sandbox, "commit", payload.path, args, shape=HeadOut)


@router.post(_route("pull"), response={200: HeadOut, **GIT_ERRORS})
async def pull(request: AuthedRequest, sandbox_id: str, payload: PullIn) -> dict[str, Any]:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    args = {"remote": payload.remote, "branch": payload.branch}
    return await git.run(sandbox, "pull", payload.path, args, payload.credentials(), shape=HeadOut)


@router.post(_route("push"), response={200: HeadOut, **GIT_ERRORS})
async def push(request: AuthedRequest, sandbox_id: str, payload: PushIn) -> dict[str, Any]:
    """Push the current branch (its first push publishes it to `origin`); a rejected
    push is 409 `push_rejected`."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    args = {
        "remote": payload.remote,
        "branch": payload.branch,
        "set_upstream": payload.set_upstream,
        "force": payload.force,
    }
    return await git.run(sandbox, "push", payload.path, args, payload.credentials(), shape=HeadOut)
