"""Starter code of a classroom template, inside the sandbox.

The server sends the template's starter repository as a git bundle (a file it has
just uploaded through the files service: the sandbox may have no network at all)
and asks for one of two operations on the workspace:

``install``  make an (empty) workspace a working copy of the starter commit;
``update``   merge a newer starter commit into the student's working copy the way
             nbgitpuller does: the student's work (edits, new files, deletions; not
             what .gitignore ignores) is committed first, then the starter merged.
             A file both changed keeps the student's version in place and gets the
             starter's beside it (``name.starter.ext``); a file the student deleted
             that the starter changed comes back; nothing the student wrote is
             overwritten.

The starter commit the workspace is based on is kept in ``refs/starter/head`` (and
``refs/remotes/origin/<branch>`` when there is an origin), which is the merge base
the next update starts from. Git runs as the sandbox user, with the student's hooks
and signing switched off for our own commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import subprocess
from typing import Any

from . import procs
from .dispatch import on, table
from .failures import AgentFailure
from .paths import resolve_path
from .protocol import Channel, StarterInstall, StarterResult, StarterUpdate

STARTER_REF = "refs/starter/head"
INCOMING_REF = "refs/starter/incoming"
SAVE_MESSAGE = "Save my work before the starter update"
MAX_REPORT = 1000
_SHA = re.compile(r"^[0-9a-f]{40}$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<!\.lock)(?<!/)$")
# Our commands must not run the student's hooks, sign, or reuse recorded resolutions.
_CONFIG = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "rerere.enabled=false",
    "-c",
    "core.quotePath=false",
    "-c",
    "merge.renames=false",
    "-c",
    "diff.renames=false",
]


class Git:
    def __init__(self, root: str) -> None:
        self.root = root
        self.env = procs.child_env(
            {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANG": "C", "GIT_OPTIONAL_LOCKS": "0"}
        )

    def run(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(  # noqa: S603
            ["git", *_CONFIG, *args],
            cwd=self.root,
            env=self.env,
            input=stdin,
            capture_output=True,
            check=False,
        )
        if check and result.returncode != 0:
            reason = (result.stderr or result.stdout).decode(errors="replace").strip()
            raise AgentFailure("git_error", f"git {args[0]} failed: {reason[-2000:]}")
        return result

    def text(self, *args: str) -> str:
        return self.run(*args).stdout.decode(errors="replace").strip()

    def ok(self, *args: str) -> bool:
        return self.run(*args, check=False).returncode == 0

    def sha(self, ref: str) -> str | None:
        result = self.run("rev-parse", "--verify", "-q", ref + "^{commit}", check=False)
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def names(self, *args: str) -> list[str]:
        out = self.run(*args).stdout.decode(errors="surrogateescape")
        return [name for name in out.split("\0") if name]


def _check(request: StarterInstall | StarterUpdate) -> tuple[str, str]:
    root = resolve_path(request.path)
    if not isinstance(request.bundle, str) or not request.bundle.startswith("/"):
        raise AgentFailure("bad_request", "bundle must be an absolute path")
    if not isinstance(request.branch, str) or not _BRANCH.match(request.branch):
        raise AgentFailure("bad_request", "branch must be a branch name")
    if request.head and not _SHA.match(request.head):
        raise AgentFailure("bad_request", "head must be a commit id")
    if request.origin and (not isinstance(request.origin, str) or request.origin.startswith("-")):
        raise AgentFailure("bad_request", "origin must be a repository URL")
    os.makedirs(root, exist_ok=True)
    return root, request.bundle


def _fetch(git: Git, bundle: str, branch: str, head: str) -> str:
    git.run(
        "fetch",
        "-q",
        "--no-tags",
        "--no-write-fetch-head",
        bundle,
        f"+refs/heads/{branch}:{INCOMING_REF}",
    )
    incoming = git.sha(INCOMING_REF)
    if incoming is None or (head and incoming != head):
        raise AgentFailure("git_error", f"the starter bundle does not hold commit {head}")
    return incoming


def _identity(git: Git) -> None:
    """Commits need a name: the student's, else the image's default, else ours."""
    for key, variable, fallback in (
        ("user.name", "NAME", "Sandbox User"),
        ("user.email", "EMAIL", "sandbox@localhost"),
    ):
        if not git.ok("config", "--get", key):
            git.env[f"GIT_AUTHOR_{variable}"] = fallback
            git.env[f"GIT_COMMITTER_{variable}"] = fallback


def _set_base(git: Git, commit: str, branch: str, origin: str) -> None:
    git.run("update-ref", STARTER_REF, commit)
    git.run("update-ref", "-d", INCOMING_REF)
    remotes = git.text("remote").split()
    if origin and "origin" not in remotes:
        git.run("remote", "add", "origin", origin)
        remotes.append("origin")
    if "origin" in remotes:
        git.run("update-ref", f"refs/remotes/origin/{branch}", commit)


# What a student's "save my work" commit leaves out unless their .gitignore says
# otherwise (.git/info/exclude: not part of the workspace's files).
DEFAULT_EXCLUDES = (
    "node_modules/",
    "__pycache__/",
    ".venv/",
    "venv/",
    ".ipynb_checkpoints/",
    ".cache/",
)


def _exclude_defaults(git: Git) -> None:
    gitdir = git.text("rev-parse", "--absolute-git-dir")
    path = os.path.join(gitdir, "info", "exclude")
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        current = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                current = handle.read()
        missing = [p for p in DEFAULT_EXCLUDES if p not in current.splitlines()]
        if missing:
            with open(path, "a", encoding="utf-8") as handle:
                if current and not current.endswith("\n"):
                    handle.write("\n")
                handle.write("# added by the starter updates\n" + "\n".join(missing) + "\n")


def _files(git: Git, ref: str) -> list[str]:
    return git.names("ls-tree", "-r", "-z", "--name-only", ref)


def _checkout_fresh(git: Git, incoming: str, branch: str, origin: str) -> None:
    """An unborn branch becomes the starter commit (untracked files in the way stop it)."""
    result = git.run("checkout", "-q", "-B", branch, incoming, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip()
        raise AgentFailure("conflict", f"The starter files could not be checked out: {reason}")
    _set_base(git, incoming, branch, origin)
    if "origin" in git.text("remote").split():
        git.run("branch", "-q", f"--set-upstream-to=origin/{branch}", branch, check=False)


def install(request: StarterInstall) -> dict[str, Any]:
    root, bundle = _check(request)
    try:
        if os.path.lexists(os.path.join(root, ".git")):
            raise AgentFailure(
                "already_exists",
                f"{root} is already a git repository: update it instead of installing.",
            )
        git = Git(root)
        git.run("init", "-q", "-b", request.branch)
        _exclude_defaults(git)
        incoming = _fetch(git, bundle, request.branch, request.head)
        _checkout_fresh(git, incoming, request.branch, request.origin)
        return {
            "status": "installed",
            "head": incoming,
            "commit": incoming,
            "branch": request.branch,
            "files": len(_files(git, "HEAD")),
        }
    finally:
        with contextlib.suppress(OSError):
            os.unlink(bundle)


# ------------------------------------------------------------------------ update


def _aside_name(root: str, path: str, content: bytes) -> str:
    """``dir/name.starter.ext`` (or ``-2``, ``-3`` ... when that is taken by something else)."""
    directory, name = posixpath.split(path)
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dotfile like .env
        stem, dot, ext = name, "", ""
    for number in range(1, 1000):
        tag = "starter" if number == 1 else f"starter-{number}"
        candidate = posixpath.join(directory, f"{stem}.{tag}{dot}{ext}")
        full = os.path.join(root, candidate)
        if not os.path.lexists(full):
            return candidate
        with contextlib.suppress(OSError):
            if not os.path.islink(full) and os.path.isfile(full):
                with open(full, "rb") as handle:
                    if handle.read() == content:
                        return candidate
    raise AgentFailure("conflict", f"no free name beside {path} for the starter's version")


def _write_blob(git: Git, path: str, mode: str, sha: str) -> bytes:
    content = git.run("cat-file", "blob", sha).stdout
    full = os.path.join(git.root, path)
    os.makedirs(os.path.dirname(full) or git.root, exist_ok=True)
    if os.path.lexists(full) and (os.path.islink(full) or not os.path.isdir(full)):
        os.unlink(full)
    if mode == "120000":
        os.symlink(content.decode(errors="surrogateescape"), full)
        return content
    with open(full, "wb") as handle:
        handle.write(content)
    os.chmod(full, 0o755 if mode == "100755" else 0o644)
    return content


def _unmerged(git: Git) -> dict[str, dict[int, tuple[str, str]]]:
    entries: dict[str, dict[int, tuple[str, str]]] = {}
    for entry in git.names("ls-files", "-u", "-z"):
        meta, _, path = entry.partition("\t")
        mode, sha, stage = meta.split()
        entries.setdefault(path, {})[int(stage)] = (mode, sha)
    return entries


def _in_progress(git: Git) -> bool:
    gitdir = git.text("rev-parse", "--absolute-git-dir")
    markers = ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD")
    return any(os.path.exists(os.path.join(gitdir, m)) for m in markers)


def update(request: StarterUpdate) -> dict[str, Any]:
    root, bundle = _check(request)
    try:
        git = Git(root)
        if not os.path.lexists(os.path.join(root, ".git")):
            git.run("init", "-q", "-b", request.branch)
        elif _in_progress(git) or git.names("ls-files", "-u", "-z"):
            raise AgentFailure(
                "conflict",
                "The workspace's repository is in the middle of a merge, rebase or "
                "cherry-pick: finish or abort it first, then update again.",
            )
        _identity(git)
        _exclude_defaults(git)
        incoming = _fetch(git, bundle, request.branch, request.head)
        head = git.sha("HEAD")
        report: dict[str, Any] = {
            "status": "up_to_date",
            "head": incoming,
            "updated": [],
            "restored": [],
            "conflicts": [],
        }
        if head and git.ok("merge-base", "--is-ancestor", incoming, "HEAD"):
            _set_base(git, incoming, request.branch, request.origin)
            report["commit"] = head
            return report
        # 1. The student's work, committed (ignored files only where the starter
        # now brings a file of that name: then they must not be overwritten).
        git.run("add", "-A")
        starter_files = set(_files(git, incoming))
        ignored = [
            path
            for path in git.names("ls-files", "-z", "--others", "--ignored", "--exclude-standard")
            if path in starter_files
        ]
        if ignored:
            git.run("add", "-f", "--", *ignored)
        if head is None:
            if not git.names("ls-files", "-z"):
                _checkout_fresh(git, incoming, request.branch, request.origin)
                report.update(
                    status="updated", commit=incoming, updated=_files(git, "HEAD")[:MAX_REPORT]
                )
                return report
            git.run("commit", "-q", "--no-verify", "-m", SAVE_MESSAGE)
        elif not git.ok("diff", "--cached", "--quiet", "HEAD"):
            git.run("commit", "-q", "--no-verify", "-m", SAVE_MESSAGE)
        saved = git.sha("HEAD")
        assert saved is not None  # noqa: S101
        report["saved_work"] = saved != head
        # 2. The merge; conflicts resolved in the student's favour.
        message = f"Merge starter update {incoming[:7]}"
        merged = git.run(
            "merge",
            "-q",
            "--no-edit",
            "--no-verify",
            "--allow-unrelated-histories",
            "-X",
            "no-renames",
            "-m",
            message,
            incoming,
            check=False,
        )
        if merged.returncode != 0:
            unmerged = _unmerged(git)
            if not unmerged:
                reason = (merged.stderr or merged.stdout).decode(errors="replace").strip()
                with contextlib.suppress(AgentFailure):
                    git.run("merge", "--abort")
                raise AgentFailure("git_error", f"The starter could not be merged: {reason}")
            conflicts, restored = _resolve(git, unmerged)
            if git.names("ls-files", "-u", "-z"):
                git.run("merge", "--abort", check=False)
                raise AgentFailure(
                    "conflict", "The starter could not be merged: some conflicts remain."
                )
            git.run("commit", "-q", "--no-verify", "-m", f"{message} (conflicts kept aside)")
            report["conflicts"] = conflicts
            report["restored"] = restored
        commit = git.sha("HEAD")
        asides = {c["kept_as"] for c in report["conflicts"] if c.get("kept_as")}
        changed = git.names("diff", "--name-only", "-z", "--no-renames", saved, "HEAD")
        report.update(
            status="updated",
            commit=commit,
            updated=[p for p in changed if p not in asides][:MAX_REPORT],
        )
        _set_base(git, incoming, request.branch, request.origin)
        return report
    finally:
        with contextlib.suppress(OSError):
            os.unlink(bundle)


def _resolve(
    git: Git, unmerged: dict[str, dict[int, tuple[str, str]]]
) -> tuple[list[dict[str, Any]], list[str]]:
    conflicts: list[dict[str, Any]] = []
    restored: list[str] = []
    for path, stages in sorted(unmerged.items()):
        ours, theirs = stages.get(2), stages.get(3)
        if ours and theirs:
            _write_blob(git, path, *ours)
            content = git.run("cat-file", "blob", theirs[1]).stdout
            aside = _aside_name(git.root, path, content)
            _write_blob(git, aside, *theirs)
            git.run("add", "-f", "--", path, aside)
            reason = "both_modified" if 1 in stages else "both_added"
            conflicts.append({"path": path, "kept_as": aside, "reason": reason})
        elif ours:  # the starter deleted a file the student changed: it stays
            _write_blob(git, path, *ours)
            git.run("add", "-f", "--", path)
            conflicts.append({"path": path, "kept_as": None, "reason": "deleted_by_starter"})
        elif theirs:  # the student deleted a file the starter changed: it comes back
            _write_blob(git, path, *theirs)
            git.run("add", "-f", "--", path)
            restored.append(path)
        else:
            git.run("rm", "-q", "--cached", "--ignore-unmatch", "--", path)
    return conflicts, restored


# ------------------------------------------------------------------------ handlers


async def handle_install(request: StarterInstall, channel: Channel) -> None:
    await channel.send_message(StarterResult(result=await asyncio.to_thread(install, request)))


async def handle_update(request: StarterUpdate, channel: Channel) -> None:
    await channel.send_message(StarterResult(result=await asyncio.to_thread(update, request)))


HANDLERS = table(on(StarterInstall, handle_install), on(StarterUpdate, handle_update))
