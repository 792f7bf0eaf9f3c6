"""Starter code of templates: a git repository per template on the server.

A template's starter code lives in a bare repository of its own,
``CLASSROOM_DIR/starters/<template id>.git``, whatever its source: a fetched
repository (``import_repo``) or uploaded files committed on top (``import_files``).
Its ``HEAD`` names the starter branch and ``Template.starter_head`` the commit new
sandboxes get.

Sandboxes never see the server's disk and may have no network: ``install`` and
``update`` make a git bundle here, upload it through the agent's file service and
let the agent (``container/agent/starter.py``) clone or merge from it inside the
sandbox, as the sandbox user.

The server itself fetches repositories, so a repository URL is an SSRF surface:
only http(s)/git/ssh URLs whose host resolves to public addresses are fetched (and
http(s) is pinned to the addresses checked, without redirects), with a private
HOME and no system/global git config (so none of the server's own credentials,
ssh keys or helpers are used); file:// paths and loopback/private hosts only with
``TEMPLATE_REPO_ALLOW_LOCAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import os
import posixpath
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings

from container.agent.protocol import StarterInstall, StarterResult, StarterUpdate
from sandboxes import files
from sandboxes.agentconn import call_agent
from sandboxes.coordination import Locks
from sandboxes.errors import AgentError, BadRequest, PayloadTooLarge, SandboxError
from sandboxes.execs import ExecRequest, Text, exec_stream, text_events
from sandboxes.models import Sandbox, Template
from sandboxes.progress import Report, Step, ignore
from sandboxes.templates import MAX_UPLOAD_BYTES

DEFAULT_BRANCH = "main"
MAX_FILES = 5000
MAX_PATH = 1024
SETUP_TIMEOUT = 900.0
FETCH_TIMEOUT = 300.0
SCHEMES = ("https", "http", "git", "ssh")
DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22}
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<!\.lock)(?<!/)$")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[^\]]+\]|[^:/\s]+):(?P<path>.*)$")
_TRANSPORT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")

_lock = Locks("starter")


def starters_dir() -> Path:
    return Path(settings.CLASSROOM_DIR) / "starters"


def repo_path(template: Template) -> Path:
    return starters_dir() / f"{template.id}.git"


def check_branch(branch: str) -> str:
    if not _BRANCH.match(branch or ""):
        raise BadRequest(f"{branch!r} is not a valid branch name.", code="invalid_branch")
    return branch


# ------------------------------------------------------------------ URL safety


@dataclass
class Source:
    """A repository URL checked for fetching, and how git must be told to fetch it."""

    url: str  # what git is given (for git:// the checked address in place of the host)
    display: str  # without credentials, for messages and the sandbox's origin remote
    secrets: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)  # -c options
    ssh_host: str = ""  # ssh connects to this checked address
    local: bool = False

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[str]:
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadRequest(
            f"The repository host {host!r} does not resolve: {exc}.", code="invalid_repo_url"
        ) from None
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, allow_local: bool | None = None) -> Source:
    """Refuse anything but a fetchable URL of a public host (see the module's doc)."""
    if allow_local is None:
        allow_local = bool(settings.TEMPLATE_REPO_ALLOW_LOCAL)

    def refuse(why: str) -> BadRequest:
        return BadRequest(f"The repository URL is refused: {why}", code="invalid_repo_url")

    if not isinstance(url, str) or not url.strip():
        raise refuse("it is empty.")
    if url != url.strip() or any(ord(c) < 32 or c == "\x7f" for c in url) or " " in url:
        raise refuse("it contains spaces or control characters.")
    if url.startswith("-"):
        raise refuse("it looks like a command-line option.")
    if _TRANSPORT.match(url):
        raise refuse("git's transport helpers (ext::, fd:: ...) are not allowed.")
    if url.startswith("/") or url.lower().startswith("file:"):
        if not allow_local:
            raise refuse(
                "local paths and file:// URLs are only allowed with TEMPLATE_REPO_ALLOW_LOCAL."
            )
        return Source(url=url, display=url, local=True, config=["-c", "protocol.file.allow=always"])
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise refuse(f"the scheme {scheme!r} is not one of {', '.join(SCHEMES)}.")
        host = parts.hostname or ""
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise refuse("the port is not a number.") from None
        user, password = parts.username, parts.password
    else:
        match = _SCP_LIKE.match(url)
        if not match:
            raise refuse("use an https://, http://, git:// or ssh:// URL (or user@host:path).")
        scheme, host, port = "ssh", match["host"].strip("[]"), 22
        user, password = match["user"], None
        parts = None
    if not host or host.startswith("-"):
        raise refuse("it names no host.")
    source = Source(url=url, display=url)
    if password:
        source.secrets += [password, unquote(password)]
    if parts is not None and "@" in parts.netloc:
        netloc = parts.netloc.rpartition("@")[2]
        if scheme == "ssh" and user:
            netloc = f"{user}@{netloc}"
        source.display = urlunsplit(parts._replace(netloc=netloc))
    addresses = _resolve(host, port)
    if not allow_local:
        private = [a for a in addresses if not _is_public(a)]
        if not addresses or private:
            raise refuse(
                f"{host} resolves to a private, loopback or reserved address "
                f"({', '.join(private or addresses)}); only public hosts are fetched."
            )
    pinned = addresses[0] if addresses else host
    if scheme in ("http", "https"):
        # curl connects to the addresses just checked (no second lookup to rebind)
        # and follows no redirect to elsewhere.
        resolve = f"{host}:{port}:{','.join(f'[{a}]' if ':' in a else a for a in addresses)}"
        source.config += [
            "-c",
            f"http.curloptResolve={resolve}",
            "-c",
            "http.followRedirects=false",
        ]
    elif scheme == "git" and parts is not None:
        netloc = f"[{pinned}]" if ":" in pinned else pinned
        if parts.port:
            netloc += f":{parts.port}"
        source.url = urlunsplit(parts._replace(netloc=netloc))
    else:
        source.ssh_host = pinned
    return source


# ------------------------------------------------------------------ git on the server


def _git_home() -> Path:
    home = Path(settings.CLASSROOM_DIR) / "git-home"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def _env(source: Source | None = None) -> dict[str, str]:
    home = _git_home()
    allowed = "file" if source is not None and source.local else "https:http:git:ssh"
    ssh = (
        f"ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none "
        f"-o IdentityFile=none -o StrictHostKeyChecking=accept-new "
        f"-o UserKnownHostsFile={home / 'known_hosts'} -o ConnectTimeout=30"
    )
    if source is not None and source.ssh_host:
        ssh += f" -o HostName={source.ssh_host}"
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": allowed,
        "GIT_SSH_COMMAND": ssh,
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "60",
        "LC_ALL": "C",
        "LANG": "C",
    }


def _reason(exc: Exception, source: Source | None = None) -> str:
    lines: list[str] = []
    for stream in ("stderr", "stdout"):
        text = str(getattr(exc, stream, "") or "").strip()
        text = text.removeprefix(f"{stream}:").strip().strip("'").strip()
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if line.startswith(("fatal:", "error:", "remote:"))]
    reason = " ".join(useful or lines[-3:]) or str(exc)
    if source is not None:
        reason = source.scrub(reason)
        if source.url != source.display:
            reason = reason.replace(source.url, source.display)
    return reason[-2000:]


def _open(path: Path, create: bool = False) -> Any:
    import git

    if not path.exists():
        if not create:
            raise BadRequest("This template has no starter code yet.", code="no_starter")
        path.parent.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(path, bare=True)
        repo.git.symbolic_ref("HEAD", f"refs/heads/{DEFAULT_BRANCH}", env=_env())
        return repo
    return git.Repo(path)


def _branch_of(repo: Any) -> str:
    ref = str(repo.git.symbolic_ref("HEAD", env=_env()))
    return ref.removeprefix("refs/heads/")


def _head_of(repo: Any) -> str | None:
    try:
        return repo.git.rev_parse("--verify", "-q", "HEAD^{commit}", env=_env()) or None
    except Exception:
        return None


def _git(cwd: Path, source: Source, *args: str) -> str:
    """One remote git command (its -c options before the subcommand, as git wants)."""
    import git

    return git.Git(str(cwd)).execute(
        ["git", *source.config, *args],
        env=_env(source),
        kill_after_timeout=FETCH_TIMEOUT,
        stdout_as_string=True,
    )


def _remote_head(path: Path, source: Source) -> str:
    """The branch the remote's HEAD names (its default branch)."""
    import git

    try:
        out = _git(path, source, "ls-remote", "--symref", "--", source.url, "HEAD")
    except git.GitCommandError as exc:
        raise BadRequest(
            f"git could not read {source.display}: {_reason(exc, source)}", code="git_error"
        ) from None
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/") : -len("\tHEAD")]
    raise BadRequest(
        f"{source.display} has no default branch (is it empty?): name a branch.",
        code="git_error",
    )


def _fetch(path: Path, source: Source, branch: str | None) -> tuple[str, str]:
    import git

    repo = _open(path, create=True)
    branch = check_branch(branch) if branch else _remote_head(path, source)
    ref = f"refs/heads/{branch}"
    before = {head.path: head.commit.hexsha for head in repo.heads if head.is_valid()}
    try:
        _git(
            path,
            source,
            "fetch",
            "-q",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            source.url,
            f"+{ref}:{ref}",
        )
    except git.GitCommandError as exc:
        reason = _reason(exc, source)
        if "couldn't find remote ref" in reason.lower():
            reason = f"the repository has no branch {branch!r} ({reason})"
        raise BadRequest(
            f"git could not fetch {source.display}: {reason}", code="git_error"
        ) from None
    limit = int(settings.TEMPLATE_REPO_MAX_SIZE)
    size = _repo_size(path)
    if limit and size > limit:
        _roll_back(repo, ref, before.get(ref))
        raise BadRequest(
            f"{source.display} is too large for a starter: {size // (1024 * 1024)} MiB of git "
            f"objects, at most {limit // (1024 * 1024)} MiB (TEMPLATE_REPO_MAX_SIZE).",
            code="repo_too_large",
        )
    repo.git.symbolic_ref("HEAD", ref, env=_env())
    for head in list(repo.heads):
        if head.name != branch:
            repo.git.update_ref("-d", head.path, env=_env())
    sha = _head_of(repo)
    assert sha is not None  # noqa: S101
    return sha, branch


def _repo_size(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path / "objects"):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _roll_back(repo: Any, ref: str, old: str | None) -> None:
    """Undo a fetch: the branch as it was, and the fetched objects gone."""
    env = _env()
    if old:
        repo.git.update_ref(ref, old, env=env)
    else:
        with contextlib.suppress(Exception):
            repo.git.update_ref("-d", ref, env=env)
    with contextlib.suppress(Exception):
        repo.git.reflog("expire", "--expire=now", "--all", env=env)
        repo.git.gc("-q", "--prune=now", env=env)


async def import_repo(template: Template) -> str:
    """Fetch ``template.repo_url`` (``repo_branch``, default the remote's HEAD) into
    the template's starter repository; sets and saves ``starter_head``."""
    if not template.repo_url:
        raise BadRequest("The template has no repository URL.", code="no_repo_url")
    source = await asyncio.to_thread(check_url, template.repo_url)
    async with _lock(template.id):
        sha, _ = await asyncio.to_thread(
            _fetch, repo_path(template), source, template.repo_branch or None
        )
        template.starter_head = sha
        await template.asave(update_fields=["starter_head", "updated_at"])
    return sha


# ------------------------------------------------------------------ uploaded files


def check_file_path(raw: str) -> str:
    def refuse(why: str) -> BadRequest:
        return BadRequest(f"The file path {raw!r} is refused: {why}", code="invalid_path")

    if not isinstance(raw, str) or not raw or "\0" in raw or len(raw) > MAX_PATH:
        raise refuse("it must be a non-empty relative path.")
    path = raw.replace("\\", "/")
    if path.startswith("/"):
        raise refuse("it must be relative.")
    parts = path.split("/")
    if any(part == ".." for part in parts):
        raise refuse("it must not contain '..'.")
    parts = [part for part in parts if part not in ("", ".")]
    if not parts:
        raise refuse("it names no file.")
    if any(part.lower() == ".git" for part in parts):
        raise refuse("files under .git are not allowed.")
    if any(ord(c) < 32 for c in path):
        raise refuse("it contains control characters.")
    return "/".join(parts)


def _commit_files(
    path: Path, entries: list[tuple[str, bytes]], message: str, author: tuple[str, str]
) -> str:
    import git
    from gitdb import IStream

    repo = _open(path, create=True)
    env = _env()
    parent = _head_of(repo)
    existing = (
        set(repo.git.ls_tree("-r", "-z", "--name-only", parent, env=env).split("\0")) - {""}
        if parent
        else set()
    )
    with tempfile.TemporaryDirectory(prefix="starter-index-") as scratch:
        env = {**env, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
        if parent:
            repo.git.read_tree(parent, env=env)
        lines: list[str] = []
        new_paths = {p for p, _ in entries}
        for name in sorted(existing):
            parents = {posixpath.join(*name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
            # A new file where a directory was (or a directory where a file was).
            if parents & new_paths or any(p.startswith(name + "/") for p in new_paths):
                lines.append(f"0 {'0' * 40}\t{name}")
        for name, data in entries:
            stored = repo.odb.store(IStream("blob", len(data), io.BytesIO(data)))
            lines.append(f"100644 {stored.hexsha.decode()}\t{name}")
        listing = os.path.join(scratch, "index-info")
        with open(listing, "wb") as handle:
            handle.write(("\n".join(lines) + "\n").encode())
        with open(listing, "rb") as handle:
            repo.git.update_index("--index-info", istream=handle, env=env)
        tree = repo.git.write_tree(env=env)
    if parent and repo.git.rev_parse(f"{parent}^{{tree}}", env=env) == tree:
        return parent
    identity = {
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": author[0],
        "GIT_COMMITTER_EMAIL": author[1],
    }
    args = [tree, "-m", message] + (["-p", parent] if parent else [])
    commit = str(repo.git.commit_tree(*args, env={**_env(), **identity}))
    branch = _branch_of(repo)
    try:
        repo.git.update_ref(f"refs/heads/{branch}", commit, parent or "0" * 40, env=_env())
    except git.GitCommandError:
        raise SandboxError(
            "The starter changed while the files were being committed; try again.",
            code="conflict",
        ) from None
    return commit


async def import_files(
    template: Template,
    files: list[tuple[str, bytes]],  # noqa: A002 - the name the callers use
    message: str,
    author: tuple[str, str] = ("Starter", "starter@localhost"),
) -> str:
    """Commit uploaded files (relative paths) on top of the current starter (a new
    repository if there is none); sets and saves ``starter_head``."""
    if not files:
        raise BadRequest("Upload at least one file.", code="no_files")
    if len(files) > MAX_FILES:
        raise BadRequest(f"At most {MAX_FILES} files at once.", code="too_many_files")
    total = sum(len(data) for _, data in files)
    if total > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(
            f"The files add up to {total} bytes; at most {MAX_UPLOAD_BYTES} are allowed.",
            code="payload_too_large",
        )
    entries: dict[str, bytes] = {}
    for raw, data in files:
        entries[check_file_path(raw)] = bytes(data)
    message = (message or "").strip() or "Upload starter files"
    async with _lock(template.id):
        sha = await asyncio.to_thread(
            _commit_files, repo_path(template), sorted(entries.items()), message, author
        )
        template.starter_head = sha
        await template.asave(update_fields=["starter_head", "updated_at"])
    return sha


def delete_repo(template: Template) -> None:
    shutil.rmtree(repo_path(template), ignore_errors=True)
    for bundle in bundles_dir().glob(f"{template.id}-*.bundle"):
        with contextlib.suppress(OSError):
            bundle.unlink()


# ------------------------------------------------------------------ reading on the server

# What ``read_files`` holds in memory at most: one file, and all of them.
READ_FILE_MAX = 8 * 1024 * 1024
READ_TOTAL_MAX = 64 * 1024 * 1024


def _read_files(path: Path, commit: str, prefixes: tuple[str, ...]) -> dict[str, tuple[int, bytes]]:
    repo = _open(path)
    env = _env()
    listing = repo.git.ls_tree("-r", "-l", "-z", "--full-tree", commit, env=env)
    found: dict[str, tuple[int, bytes]] = {}
    total = 0
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, _, name = entry.partition("\t")
        mode, kind, sha, size = meta.split()
        if kind != "blob" or not name.startswith(prefixes) or int(size) > READ_FILE_MAX:
            continue
        total += int(size)
        if total > READ_TOTAL_MAX:
            break
        found[name] = (int(mode, 8), repo.odb.stream(bytes.fromhex(sha)).read())
    return found


async def read_files(
    template: Template, commit: str, prefixes: tuple[str, ...] = ("",)
) -> dict[str, tuple[int, bytes]]:
    """The starter's files at ``commit`` under ``prefixes``, as ``{path: (git mode,
    content)}``, from the server's own copy (what a student edits in their
    workspace never reaches it). Files over READ_FILE_MAX are left out."""
    import git

    try:
        return await asyncio.to_thread(_read_files, repo_path(template), commit, prefixes)
    except git.GitCommandError as exc:
        raise SandboxError(f"The starter could not be read: {_reason(exc)}") from None


# ------------------------------------------------------------------ into sandboxes


def bundles_dir() -> Path:
    return Path(settings.CLASSROOM_DIR) / "bundles"


def _bundle(path: Path, template_id: str) -> tuple[Any, str, str]:
    """The starter branch as a git bundle, opened: (file, branch, head).

    One bundle per starter commit is made and reused (a class of 30 joining at once
    shares it); older ones of the template are removed when a newer one is made
    (open handles keep reading a removed file).
    """
    repo = _open(path)
    branch = _branch_of(repo)
    head = _head_of(repo)
    if head is None:
        raise BadRequest("This template has no starter code yet.", code="no_starter")
    folder = bundles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{template_id}-{head}.bundle"
    with contextlib.suppress(FileNotFoundError):
        return open(target, "rb"), branch, head  # noqa: SIM115 - the caller closes it
    fd, name = tempfile.mkstemp(prefix=f".{template_id}-", suffix=".bundle", dir=folder)
    os.close(fd)
    try:
        repo.git.bundle("create", name, f"refs/heads/{branch}", env=_env())
        handle = open(name, "rb")  # noqa: SIM115 - the caller closes it
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    for old in folder.glob(f"{template_id}-*.bundle"):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()
    return handle, branch, head


def _origin(template: Template) -> str:
    """The real repository as the sandbox's ``origin`` (never with credentials)."""
    url = template.repo_url
    if not url or url.startswith("/") or url.lower().startswith("file:"):
        return url if url and settings.TEMPLATE_REPO_ALLOW_LOCAL else ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "://" in url and "@" in parts.netloc:
        netloc = parts.netloc.rpartition("@")[2]
        if parts.scheme == "ssh" and parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _send_bundle(sandbox: Sandbox, template: Template, request_cls: type) -> dict[str, Any]:
    if not template.starter_head:
        raise BadRequest("This template has no starter code yet.", code="no_starter")
    # One starter operation per sandbox at a time (git's index lock would refuse a
    # second one anyway, less clearly).
    async with _lock(f"sandbox:{sandbox.id}"):
        return await _send_bundle_now(sandbox, template, request_cls)


async def _send_bundle_now(
    sandbox: Sandbox, template: Template, request_cls: type
) -> dict[str, Any]:
    handle, branch, head = await asyncio.to_thread(_bundle, repo_path(template), template.id)
    target = f"/tmp/.starter-{secrets.token_hex(6)}.bundle"  # noqa: S108 - in the sandbox
    try:
        await files.write(sandbox, target, handle.read)
    finally:
        handle.close()
    request = request_cls(bundle=target, branch=branch, head=head, origin=_origin(template))
    reply = await call_agent(sandbox, request)
    if not isinstance(reply, StarterResult):
        raise AgentError(f"The sandbox's agent answered {reply.type!r} to a starter request.")
    return reply.result


async def install(sandbox: Sandbox, template: Template, report: Report = ignore) -> None:
    """Put the template's starter into the sandbox's /workspace as a git working
    copy, then run the template's setup command there (``report``: each stage)."""
    if template.starter_head:
        await report(
            Step("starter", f"Copying the starter files (commit {template.starter_head[:7]})")
        )
        await _send_bundle(sandbox, template, StarterInstall)
    await run_setup(sandbox, template, report)


# The end of the setup command's output kept for its error message, and how often at
# most its latest line is reported.
SETUP_TAIL = 1500
SETUP_REPORT_EVERY = 0.25


async def run_setup(sandbox: Sandbox, template: Template, report: Report = ignore) -> None:
    command = template.setup_command.strip()
    if not command:
        return
    await report(Step("setup", f"Running the setup command: {command[:200]}"))
    request = ExecRequest(command=template.setup_command, cwd="/workspace", timeout=SETUP_TIMEOUT)
    tail = ""
    reported = 0.0
    exit_ = None
    async for item in text_events(exec_stream(sandbox, request)):
        if not isinstance(item, Text):
            exit_ = item.exit
            continue
        tail = (tail + item.text)[-SETUP_TAIL:]
        lines = [line for line in re.split(r"[\r\n]+", tail) if line.strip()]
        now = time.monotonic()
        if lines and now - reported >= SETUP_REPORT_EVERY:
            reported = now
            await report(Step("setup", f"Running the setup command: {lines[-1].strip()[:300]}"))
    if exit_ is not None and exit_.exit_code == 0 and not exit_.timed_out:
        return
    what = (
        f"timed out after {SETUP_TIMEOUT:g}s"
        if exit_ is None or exit_.timed_out
        else f"failed with exit code {exit_.exit_code}"
    )
    raise BadRequest(
        f"The template's setup command {what}. Output (the end): {tail.strip() or '(none)'}",
        code="setup_failed",
    )


async def update(sandbox: Sandbox, template: Template) -> dict[str, Any]:
    """Merge the template's current starter into the sandbox's workspace like
    nbgitpuller; returns the agent's report::

        {"status": "updated" | "up_to_date", "head": <starter commit>,
         "commit": <workspace HEAD>, "updated": [paths], "restored": [paths],
         "conflicts": [{"path", "kept_as", "reason"}], "saved_work": bool}
    """
    return await _send_bundle(sandbox, template, StarterUpdate)
