"""Git through GitPython: clone, status, log, diff, branches, checkout,
add, commit, pull and push, for the API and the IDE's source-control panel.

GitPython is imported inside the handler (agent start-up stays fast) and every git
command runs in a worker thread, so a slow clone never stalls the agent.

Credentials are given per call and reach only the one git process that needs
them: through ``GIT_ASKPASS``, a tiny script in a private (0700) temporary
directory that reads them from that process's environment. They are never put
in a remote URL (credentials written in the URL are taken out of it first), in
``.git/config``, in a credential store (helpers are switched off for the call) or
in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .dispatch import on, table
from .failures import AgentFailure
from .paths import resolve_path
from .protocol import Channel, GitProgress, GitRequest, GitResult

DEFAULT_NAME = "Sandbox User"
DEFAULT_EMAIL = "sandbox@localhost"
MAX_FILES = 10_000
MAX_DIFF = 2 * 1024 * 1024
MAX_LOG = 1000
MAX_MESSAGE = 16 * 1024

_AUTH_FAILURES = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "access denied",
    "permission denied (publickey",
    "http basic: access denied",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "invalid username or password",
)

_ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "$SANDBOX_GIT_USERNAME" ;;
  *) printf '%s\\n' "$SANDBOX_GIT_PASSWORD" ;;
esac
"""


class Call:
    """One request's context: its credentials, and how to scrub them from text."""

    def __init__(
        self, request: GitRequest, progress: Callable[[GitProgress], None] | None = None
    ) -> None:
        self.request = request
        self.progress = progress  # where a clone reports git's progress, if asked
        self.args = request.args if isinstance(request.args, dict) else {}
        self.username = request.username or None
        self.password = request.password or request.token or None
        if request.token and not request.username:
            self.username = "x-access-token"  # GitHub's convention; others ignore it
        self.secrets = [s for s in (request.password, request.token) if s]
        self.file: str | None = None  # set when ``path`` names a file

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def arg(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.args.get(name, default)
        if value is not None and not isinstance(value, kind):
            raise AgentFailure("bad_request", f"{name} has the wrong type")
        return value

    @contextlib.contextmanager
    def env(self, remote: bool = False) -> Iterator[dict[str, str]]:
        """Environment for one git process (credentials only where they are needed)."""
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
            "-o ConnectTimeout=30",
            # A transfer slower than 1 KB/s for a minute is given up, not waited on forever.
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.lowSpeedLimit",
            "GIT_CONFIG_VALUE_0": "1000",
            "GIT_CONFIG_KEY_1": "http.lowSpeedTime",
            "GIT_CONFIG_VALUE_1": "60",
        }
        if not remote or not (self.username or self.password):
            yield env
            return
        private = tempfile.mkdtemp(prefix=".git-askpass-")  # mode 0700
        try:
            script = os.path.join(private, "askpass")
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "w") as handle:
                handle.write(_ASKPASS)
            env.update(
                {
                    "GIT_ASKPASS": script,
                    "SANDBOX_GIT_USERNAME": self.username or "",
                    "SANDBOX_GIT_PASSWORD": self.password or "",
                    # No credential helper may store what we pass (an empty value
                    # resets the list of helpers).
                    "GIT_CONFIG_COUNT": "3",
                    "GIT_CONFIG_KEY_2": "credential.helper",
                    "GIT_CONFIG_VALUE_2": "",
                }
            )
            yield env
        finally:
            shutil.rmtree(private, ignore_errors=True)


def _strip_url_credentials(url: str, call: Call) -> str:
    """The URL without a password (and for HTTP without a user name either): those
    go to git through askpass, never into the remote's URL in .git/config."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    if sep and password:
        call.secrets += [password, unquote(password)]
        if not call.password:
            call.password = unquote(password)
    if parts.scheme in ("http", "https"):
        if user and not call.username:
            call.username = unquote(user)
        return urlunsplit(parts._replace(netloc=host))
    # ssh://user@host keeps its user: ssh needs it and it is no secret
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def _git_error(exc: Exception, call: Call, what: str) -> AgentFailure:
    """A GitCommandError as an AgentFailure carrying git's own reason."""
    lines = []
    for stream in ("stderr", "stdout"):
        text = str(getattr(exc, stream, "") or "").strip()
        text = text.removeprefix(f"{stream}:").strip().strip("'").strip()
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if line.startswith(("fatal:", "error:", "remote:", "!", "hint: Updates were rejected"))
    ]
    reason = call.scrub(" ".join(useful or lines[-3:]) or str(exc))
    lowered = reason.lower()
    if any(marker in lowered for marker in _AUTH_FAILURES):
        return AgentFailure(
            "git_auth_failed",
            f"{what} failed: authentication was refused ({reason}). Pass username and "
            "password, or token, for a private repository.",
        )
    if "[rejected]" in lowered or "non-fast-forward" in lowered or "fetch first" in lowered:
        return AgentFailure("push_rejected", f"{what} was rejected: {reason} Pull first.")
    if "conflict" in lowered or "would be overwritten" in lowered:
        return AgentFailure("conflict", f"{what} failed: {reason}")
    if "already exists" in lowered:
        return AgentFailure("already_exists", f"{what} failed: {reason}")
    if "nothing to commit" in lowered or "nothing added to commit" in lowered:
        return AgentFailure("nothing_to_commit", "Nothing to commit: add changes first.")
    return AgentFailure("git_error", f"{what} failed: {reason}")


def _open_repo(call: Call) -> Any:
    import git

    path = resolve_path(call.request.path)
    if not os.path.exists(path):
        raise AgentFailure("not_found", f"{path} does not exist.")
    if not os.path.isdir(path):  # a file in a repository: log and diff look at it
        call.file = path
        path = os.path.dirname(path)
    try:
        return git.Repo(path, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        raise AgentFailure(
            "not_a_repository", f"{path} is not inside a git repository: clone or init one."
        ) from None


def _head(repo: Any) -> tuple[str | None, str | None]:
    branch = None if repo.head.is_detached else repo.active_branch.name
    try:
        commit = repo.head.commit.hexsha
    except ValueError:  # no commit yet
        commit = None
    return branch, commit


def _identity_env(repo: Any, name: str | None, email: str | None) -> dict[str, str]:
    reader = repo.config_reader()
    name = name or reader.get_value("user", "name", "") or DEFAULT_NAME
    email = email or reader.get_value("user", "email", "") or DEFAULT_EMAIL
    return {
        "GIT_AUTHOR_NAME": str(name),
        "GIT_AUTHOR_EMAIL": str(email),
        "GIT_COMMITTER_NAME": str(name),
        "GIT_COMMITTER_EMAIL": str(email),
    }


def _ref_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or value.startswith("-") or "\0" in value:
        raise AgentFailure("bad_request", f"{field} must be a branch or ref name")
    return value


# ------------------------------------------------------------------------ operations


def clone(call: Call) -> dict[str, Any]:
    import git

    url = call.arg("url", str)
    if not url or url.startswith("-") or "\0" in url:
        raise AgentFailure("bad_request", "url must be a repository URL")
    branch = call.arg("branch", str)
    depth = call.arg("depth", int)
    if branch is not None:
        _ref_name(branch, "branch")
    if depth is not None and (isinstance(depth, bool) or depth < 1):
        raise AgentFailure("bad_request", "depth must be a positive whole number")
    url = _strip_url_credentials(url, call)
    if call.request.path:
        target = resolve_path(call.request.path)
    else:
        name = re.sub(r"\.git$", "", url.rstrip("/").rpartition("/")[2].rpartition(":")[2])
        target = resolve_path(name or "repository")
    if (
        os.path.isdir(target)
        and os.listdir(target)
        or os.path.lexists(target)
        and not (os.path.isdir(target))
    ):
        raise AgentFailure(
            "already_exists", f"{target} exists and is not empty: choose another path."
        )
    options: dict[str, Any] = {}
    if branch:
        options["branch"] = branch
    if depth:
        options["depth"] = depth
    progress = _progress_reader(call.progress, call.scrub) if call.progress else None
    if progress is not None:
        options["progress"] = progress
    with call.env(remote=True) as env:
        try:
            repo = git.Repo.clone_from(url, target, env=env, **options)
        except git.GitCommandError as exc:
            if progress is not None and not exc.stderr:  # git's reason went to the reader
                exc.stderr = "\n".join(progress.error_lines or progress.other_lines[-3:])
            raise _git_error(exc, call, f"git clone {url}") from None
    head_branch, commit = _head(repo)
    return {"path": repo.working_tree_dir, "branch": head_branch, "commit": commit}


_STAGES = {
    "COUNTING": "Counting objects",
    "COMPRESSING": "Compressing objects",
    "WRITING": "Writing objects",
    "RECEIVING": "Receiving objects",
    "RESOLVING": "Resolving deltas",
    "FINDING_SOURCES": "Finding sources",
    "CHECKING_OUT": "Checking out files",
}


def _progress_reader(send: Callable[[GitProgress], None], scrub: Callable[[str], str]) -> Any:
    """A GitPython progress reader (git runs with ``--progress``) that sends each
    stage and each whole percent of it; it keeps git's other lines for errors."""
    import git

    class Reader(git.RemoteProgress):
        last: tuple[str, int] = ("", -1)

        def update(
            self, op_code: int, cur_count: Any, max_count: Any = None, message: str = ""
        ) -> None:
            stage = next(
                (words for name, words in _STAGES.items() if op_code & getattr(self, name)),
                "Working",
            )
            current, whole = int(float(cur_count or 0)), int(float(max_count or 0))
            percent = current * 100 // whole if whole else current
            if (stage, percent) == self.last:
                return
            self.last = (stage, percent)
            send(GitProgress(stage=stage, current=current, total=whole, message=scrub(message)))

    return Reader()


_STATUS_NAMES = {
    "M": "modified",
    "T": "modified",
    "A": "added",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
}


def _file_status(xy: str) -> str:
    if xy == "??":
        return "untracked"
    if "U" in xy or xy in ("AA", "DD"):
        return "conflicted"
    for letter in ("R", "C", "A", "D", "M", "T"):
        if letter in xy:
            return _STATUS_NAMES[letter]
    return "modified"


def status(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    branch, commit = _head(repo)
    ahead = behind = 0
    upstream = None
    if branch and commit:
        tracking = repo.active_branch.tracking_branch()
        if tracking is not None and tracking.is_valid():
            upstream = tracking.name
            with contextlib.suppress(Exception):
                counts = repo.git.rev_list("--left-right", "--count", f"HEAD...{tracking.path}")
                ahead, behind = (int(n) for n in counts.split())
    raw = repo.git.status(
        "--porcelain=v1", "-z", "--untracked-files=all", strip_newline_in_stdout=False
    )
    entries = raw.split("\0")
    files: list[dict[str, Any]] = []
    index = 0
    truncated = False
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        xy, path = entry[:2], entry[3:]
        item: dict[str, Any] = {
            "path": path,
            "status": _file_status(xy),
            "staged": xy[0] not in " ?!",
            "unstaged": xy[1] not in " !" or xy == "??",
        }
        if xy[0] in "RC" and index < len(entries):
            item["orig_path"] = entries[index]
            index += 1
        if len(files) >= MAX_FILES:
            truncated = True
            break
        files.append(item)
    result = {
        "path": repo.working_tree_dir,
        "branch": branch,
        "commit": commit,
        "upstream": upstream,
        "ahead": ahead,
        "behind": behind,
        "clean": not files,
        "files": files,
    }
    if truncated:
        result["truncated"] = True
    return result


def log(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    limit = call.arg("limit", int, 20)
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LOG:
        raise AgentFailure("bad_request", f"limit must be between 1 and {MAX_LOG}")
    if _head(repo)[1] is None:
        return {"commits": []}
    file_path = call.arg("file", str) or call.file
    commits = []
    kwargs: dict[str, Any] = {"max_count": limit}
    if file_path:
        kwargs["paths"] = file_path
    for commit in repo.iter_commits("HEAD", **kwargs):
        commits.append(
            {
                "commit": commit.hexsha,
                "short": commit.hexsha[:7],
                "author_name": commit.author.name,
                "author_email": commit.author.email,
                "date": commit.authored_datetime.isoformat(),
                "summary": str(commit.summary)[:MAX_MESSAGE],
                "message": str(commit.message)[:MAX_MESSAGE],
                "parents": [p.hexsha for p in commit.parents],
            }
        )
    return {"commits": commits}


def diff(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    args = ["--no-color"]
    if call.arg("staged", bool, False):
        args.append("--cached")
    file_path = call.arg("file", str) or call.file
    args.append("--")
    if file_path:
        args.append(file_path)
    try:
        text = repo.git.diff(*args, strip_newline_in_stdout=False)
    except Exception as exc:
        raise _git_error(exc, call, "git diff") from None
    result: dict[str, Any] = {"diff": text[:MAX_DIFF]}
    if len(text) > MAX_DIFF:
        result["truncated"] = True
    return result


def branches(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    current, _ = _head(repo)
    local = []
    for head in repo.heads:
        tracking = head.tracking_branch()
        local.append(
            {
                "name": head.name,
                "commit": head.commit.hexsha,
                "current": head.name == current,
                "upstream": tracking.name if tracking is not None else None,
            }
        )
    remote = []
    for item in repo.remotes:
        for ref in item.refs:
            if ref.remote_head == "HEAD":
                continue
            with contextlib.suppress(ValueError):
                remote.append({"name": ref.name, "commit": ref.commit.hexsha})
    return {"current": current, "branches": local, "remote_branches": remote}


def checkout(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    branch = _ref_name(call.arg("branch", str), "branch")
    create = call.arg("create", bool, False)
    start = call.arg("start_point", str)
    args = ["-b", branch] if create else [branch]
    if create and start:
        args.append(_ref_name(start, "start_point"))
    try:
        repo.git.checkout(*args, "--")
    except Exception as exc:
        stderr = str(getattr(exc, "stderr", ""))
        if not create and ("did not match" in stderr or "invalid reference" in stderr):
            raise AgentFailure(
                "not_found", f"No branch or ref {branch!r}: pass create=true to make it."
            ) from None
        raise _git_error(exc, call, f"git checkout {branch}") from None
    head_branch, commit = _head(repo)
    return {"branch": head_branch, "commit": commit}


def add(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    paths = call.arg("paths", list, [])
    if not all(isinstance(p, str) and p and "\0" not in p for p in paths):
        raise AgentFailure("bad_request", "paths must be a list of file paths")
    try:
        if paths:
            repo.git.add("--", *paths)
        else:
            repo.git.add("-A")
    except Exception as exc:
        raise _git_error(exc, call, "git add") from None
    return status(call)


def commit(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    message = call.arg("message", str)
    if not message or not message.strip():
        raise AgentFailure("bad_request", "message must not be empty")
    env = _identity_env(repo, call.arg("author_name", str), call.arg("author_email", str))
    args = ["-m", message]
    if call.arg("all", bool, False):
        args.insert(0, "-a")
    if call.arg("allow_empty", bool, False):
        args.insert(0, "--allow-empty")
    try:
        repo.git.commit(*args, env=env)
    except Exception as exc:
        raise _git_error(exc, call, "git commit") from None
    branch, sha = _head(repo)
    return {"branch": branch, "commit": sha, "summary": message.strip().splitlines()[0]}


def _remote_args(call: Call) -> list[str]:
    remote = call.arg("remote", str)
    branch = call.arg("branch", str)
    args = []
    if remote:
        args.append(_ref_name(remote, "remote"))
    if branch:
        if not remote:
            args.append("origin")
        args.append(_ref_name(branch, "branch"))
    return args


def pull(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    env = _identity_env(repo, None, None)
    with call.env(remote=True) as remote_env:
        try:
            repo.git.pull(
                "--no-rebase", "--no-edit", *_remote_args(call), env={**env, **remote_env}
            )
        except Exception as exc:
            raise _git_error(exc, call, "git pull") from None
    branch, sha = _head(repo)
    return {"branch": branch, "commit": sha}


def push(call: Call) -> dict[str, Any]:
    repo = _open_repo(call)
    branch, sha = _head(repo)
    args = _remote_args(call)
    if call.arg("force", bool, False):
        args.insert(0, "--force-with-lease")
    if not args and branch:
        tracking = repo.active_branch.tracking_branch()
        if tracking is None:  # first push of this branch: publish it
            args = ["--set-upstream", "origin", branch]
    elif call.arg("set_upstream", bool, False):
        args.insert(0, "--set-upstream")
    with call.env(remote=True) as env:
        try:
            repo.git.push(*args, env=env)
        except Exception as exc:
            raise _git_error(exc, call, "git push") from None
    return {"branch": branch, "commit": sha}


OPERATIONS: dict[str, Callable[[Call], dict[str, Any]]] = {
    "clone": clone,
    "status": status,
    "log": log,
    "diff": diff,
    "branches": branches,
    "checkout": checkout,
    "add": add,
    "commit": commit,
    "pull": pull,
    "push": push,
}


def _run(
    request: GitRequest, progress: Callable[[GitProgress], None] | None = None
) -> dict[str, Any]:
    call = Call(request, progress)
    try:
        return OPERATIONS[request.op](call)
    except AgentFailure:
        raise
    except Exception as exc:  # GitPython's own errors, with secrets scrubbed
        import git

        if isinstance(exc, git.GitCommandError):
            raise _git_error(exc, call, f"git {request.op}") from None
        if isinstance(exc, git.GitCommandNotFound):
            raise AgentFailure("git_error", "git is not installed in this sandbox") from None
        raise AgentFailure("git_error", call.scrub(f"git {request.op} failed: {exc}")) from None


async def handle_git(request: GitRequest, channel: Channel) -> None:
    if request.op not in OPERATIONS:
        raise AgentFailure("bad_request", f"unknown git operation {request.op!r}")
    progress = None
    if request.op == "clone" and request.args.get("progress") is True:
        progress = _sender(channel, asyncio.get_running_loop())
    result = await asyncio.to_thread(_run, request, progress)
    await channel.send_message(GitResult(result=result))


def _sender(channel: Channel, loop: asyncio.AbstractEventLoop) -> Callable[[GitProgress], None]:
    """Send progress from git's worker thread, in order and before the result; a
    client that went away stops the reports, not the clone."""
    broken = False

    def send(progress: GitProgress) -> None:
        nonlocal broken
        if broken:
            return
        try:
            asyncio.run_coroutine_threadsafe(channel.send_message(progress), loop).result(60)
        except Exception:  # noqa: BLE001 - any failure to send means nobody listens
            broken = True

    return send


HANDLERS = table(on(GitRequest, handle_git))
