"""The async client. ``_sync_client.py`` is generated from this file by
``sdk/python/unasync.py``: edit here, then run ``python sdk/python/unasync.py``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote, urlencode

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus

from . import _async_io as _io
from ._config import resolve, ws_url
from ._sse import SSEDecoder
from .errors import (
    AgentError,
    CommandFailed,
    CommandTimeout,
    ConnectionFailed,
    InvalidRequestError,
    NotFoundError,
    SandboxIDEError,
    from_event,
    from_response,
)
from .models import (
    Archive,
    CloneResult,
    CodeContext,
    CommandResult,
    CourseInfo,
    CourseUpdate,
    Execution,
    ExposedPort,
    FileEntry,
    FileEvent,
    GitBranches,
    GitCommit,
    GitHead,
    GitStatus,
    Invite,
    InviteDetails,
    JoinResult,
    PortList,
    ProcessInfo,
    ProcessLogs,
    Result,
    SandboxInfo,
    SessionInfo,
    Share,
    StarterUpdate,
    Student,
    TemplateInfo,
    TerminalInfo,
    WriteResult,
    error_from_json,
)

_list = list  # the classes below have a method called ``list``
Progress = Callable[[int, int | None], Any]
"""``progress(bytes_done, bytes_total_or_None)``, called as a transfer advances."""

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
NO_READ_TIMEOUT = httpx.Timeout(None, connect=10.0)
CHUNK = 256 * 1024
USER_AGENT = "sandbox-ide-python/0.1"


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _command(command: str | Sequence[str]) -> str | list[str]:
    return command if isinstance(command, str) else [str(part) for part in command]


def _text(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("data", data.get("text", "")))
    return "" if data is None else str(data)


class AsyncHTTP:
    """One connection pool to the server, with the API's errors raised as exceptions."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url, self.token = resolve(url, token)
        self.client = httpx.AsyncClient(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}", "User-Agent": USER_AGENT},
            timeout=DEFAULT_TIMEOUT,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _failed(self, exc: Exception) -> SandboxIDEError:
        if isinstance(exc, httpx.TimeoutException):
            return CommandTimeout(
                f"The server at {self.url} did not answer in time ({type(exc).__name__}); "
                "retry, or pass a longer timeout."
            )
        return ConnectionFailed(f"Could not reach the server at {self.url}: {exc}.")

    async def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        await response.aread()
        try:
            body = response.json()
        except ValueError:
            body = None
        raise from_response(response.status_code, body, f"HTTP {response.status_code}")

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._failed(exc) from exc
        return await self._check(response)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    async def owned_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``json()`` for a constructor: if the call fails no object will own this
        client, so it is closed here."""
        try:
            return await self.json(method, path, **kwargs)
        except BaseException:
            await self.aclose()
            raise

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        kwargs.setdefault("timeout", NO_READ_TIMEOUT)
        try:
            async with self.client.stream(method, path, **kwargs) as response:
                await self._check(response)
                yield response
        except httpx.TransportError as exc:
            raise self._failed(exc) from exc

    async def events(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
        """The SSE events of a streaming call; an ``error`` event with a ``code``
        (a failure after the stream began) is raised."""
        headers = {**kwargs.pop("headers", {}), "Accept": "text/event-stream"}
        async with self.stream(method, path, headers=headers, **kwargs) as response:
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                item = decoder.feed(line)
                if item is None:
                    continue
                name, data = item
                if name == "error" and isinstance(data, dict) and "code" in data:
                    raise from_event(data)
                yield name, data
            item = decoder.flush()
            if item is not None:
                yield item


class AsyncSandbox:
    """A sandbox: one isolated container with a persistent ``/workspace``.

    ``AsyncSandbox.get_or_create("name")`` gets or makes one; ``files``, ``git``,
    ``processes``, ``ports`` and ``terminals`` group the rest of the API.
    """

    joined: JoinResult | None = None
    """Set on the sandbox ``AsyncCourse.join`` returns: how the join went."""

    def __init__(self, info: SandboxInfo, http: AsyncHTTP) -> None:
        self.info = info
        self._http = http
        self._path = f"/sandboxes/{quote(info.id, safe='')}"
        self.files = AsyncFiles(self)
        self.git = AsyncGit(self)
        self.processes = AsyncProcesses(self)
        self.ports = AsyncPorts(self)
        self.terminals = AsyncTerminals(self)
        self.sessions = AsyncSessions(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id={self.id} status={self.status}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

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
        url: str | None = None,
        token: str | None = None,
    ) -> AsyncSandbox:
        """The caller's sandbox called ``name``, made (and started) if it is new.

        With a ``template`` (an id or a template object) a new sandbox gets its image,
        env, limits and starter code, and its setup command is run.
        """
        http = AsyncHTTP(url, token)
        body = _drop_none(
            name=name,
            template=_template_id(template) if template is not None else None,
            env=env,
            sleep_after=sleep_after,
            keep_alive=keep_alive,
        )
        data = await http.owned_json("POST", "/sandboxes", json=body, timeout=NO_READ_TIMEOUT)
        return cls(SandboxInfo.from_json(data), http)

    @classmethod
    async def connect(
        cls, sandbox_id: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncSandbox:
        """An existing sandbox by id."""
        http = AsyncHTTP(url, token)
        data = await http.owned_json("GET", f"/sandboxes/{quote(sandbox_id, safe='')}")
        return cls(SandboxInfo.from_json(data), http)

    @classmethod
    async def from_name(
        cls, name: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncSandbox:
        """An existing sandbox by name (NotFoundError if there is none)."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/sandboxes")
            for item in data["sandboxes"]:
                if item["name"] == name:
                    return cls(SandboxInfo.from_json(item), http)
            raise NotFoundError(
                f"You have no sandbox named {name!r}: create it with "
                f"Sandbox.get_or_create({name!r}) or `sandbox-ide create {name}`.",
                status=404,
            )
        except BaseException:
            await http.aclose()
            raise

    @classmethod
    async def list(cls, *, url: str | None = None, token: str | None = None) -> _list[SandboxInfo]:
        """The caller's sandboxes."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/sandboxes")
        finally:
            await http.aclose()
        return [SandboxInfo.from_json(item) for item in data["sandboxes"]]

    # -- lifecycle ----------------------------------------------------------------------

    async def refresh(self) -> SandboxInfo:
        """Reload ``info`` (status, ports ...) from the server."""
        self.info = SandboxInfo.from_json(await self._http.json("GET", self._path))
        return self.info

    async def update(
        self,
        *,
        sleep_after: int | None = None,
        keep_alive: bool | None = None,
        env: dict[str, str] | None = None,
    ) -> SandboxInfo:
        body = _drop_none(sleep_after=sleep_after, keep_alive=keep_alive, env=env)
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
        try:
            await self._http.request("DELETE", self._path, timeout=NO_READ_TIMEOUT)
        finally:
            await self.close()

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

    async def close(self) -> None:
        """Close the HTTP connections (the sandbox keeps running)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- commands -----------------------------------------------------------------------

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        check: bool = False,
        session: SessionInfo | str | None = None,
    ) -> CommandResult:
        """Run a command (a string under ``bash -lc``, a list as argv) and wait for it.

        With ``on_stdout``/``on_stderr`` the output streams to them as it arrives.
        ``timeout`` kills the command (``result.timed_out``); ``check=True`` raises
        CommandFailed / CommandTimeout instead of returning a failed result. In a
        ``session`` (``sandbox.sessions.create()``) ``cd`` and ``export`` carry over.
        """
        body = _drop_none(
            command=_command(command),
            cwd=cwd,
            env=env,
            timeout=timeout,
            stdin=stdin,
            session=session.id if isinstance(session, SessionInfo) else session,
        )
        path = self._path + "/exec"
        if on_stdout is None and on_stderr is None:
            data = await self._http.json("POST", path, json=body, timeout=NO_READ_TIMEOUT)
            result = CommandResult.from_json(data)
        else:
            out: _list[str] = []
            err: _list[str] = []
            end: dict[str, Any] | None = None
            async for event, data in self._http.events("POST", path, json=body):
                if event == "stdout":
                    out.append(_text(data))
                    if on_stdout is not None:
                        await _io.maybe_await(on_stdout(_text(data)))
                elif event == "stderr":
                    err.append(_text(data))
                    if on_stderr is not None:
                        await _io.maybe_await(on_stderr(_text(data)))
                elif event == "exit":
                    end = data
            if end is None:
                raise AgentError("The command's stream ended before its exit status arrived.")
            result = CommandResult.from_json(end, "".join(out), "".join(err))
        if check and result.timed_out:
            raise CommandTimeout(f"The command timed out after {timeout} s: {command!r}.")
        if check and not result.success:
            raise CommandFailed(
                f"The command exited with {result.exit_code}: {command!r}; "
                f"stderr: {result.stderr[-500:]!r}",
                result,
            )
        return result

    # -- code interpreter ---------------------------------------------------------------

    async def run_code(
        self,
        code: str,
        *,
        language: str | None = None,
        context: CodeContext | str | None = None,
        timeout: float | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        on_result: Callable[[Result], Any] | None = None,
    ) -> Execution:
        """Run code in an interpreter (``context`` keeps state between runs).

        Errors in the code come back in ``execution.error``; they are not raised.
        """
        ctx = context.id if isinstance(context, CodeContext) else context
        body = _drop_none(code=code, language=language, context=ctx, timeout=timeout)
        path = self._path + "/code/run"
        if on_stdout is None and on_stderr is None and on_result is None:
            data = await self._http.json("POST", path, json=body, timeout=NO_READ_TIMEOUT)
            return Execution.from_json(data)
        execution = Execution()
        async for event, data in self._http.events("POST", path, json=body):
            if event == "stdout":
                execution.stdout += _text(data)
                if on_stdout is not None:
                    await _io.maybe_await(on_stdout(_text(data)))
            elif event == "stderr":
                execution.stderr += _text(data)
                if on_stderr is not None:
                    await _io.maybe_await(on_stderr(_text(data)))
            elif event == "result":
                result = Result.from_json(data)
                execution.results.append(result)
                if on_result is not None:
                    await _io.maybe_await(on_result(result))
            elif event == "error":
                execution.error = error_from_json(data)
            elif event == "end" and isinstance(data, dict) and data.get("error"):
                execution.error = execution.error or error_from_json(data["error"])
        return execution

    async def create_code_context(
        self, language: str = "python", *, cwd: str | None = None
    ) -> CodeContext:
        """A new persistent interpreter (``python`` or ``javascript``)."""
        data = await self._http.json(
            "POST",
            self._path + "/code/contexts",
            json=_drop_none(language=language, cwd=cwd),
            timeout=NO_READ_TIMEOUT,
        )
        return CodeContext.from_json(data)

    async def list_code_contexts(self) -> _list[CodeContext]:
        data = await self._http.json("GET", self._path + "/code/contexts")
        return [CodeContext.from_json(c) for c in data["contexts"]]

    async def remove_code_context(self, context: CodeContext | str) -> None:
        ctx = context.id if isinstance(context, CodeContext) else context
        await self._http.request("DELETE", f"{self._path}/code/contexts/{quote(ctx, safe='')}")

    # -- terminals ----------------------------------------------------------------------

    def terminal(self, name: str = "main", *, cols: int = 80, rows: int = 24) -> AsyncTerminal:
        """An interactive shell (PTY) called ``name``; reconnecting re-attaches to it.

        Use as a context manager, or call ``connect()``; ``send``/``recv`` connect lazily.
        """
        return AsyncTerminal(self, name, cols, rows)


class AsyncFiles:
    """Files in the sandbox; relative paths are relative to ``/workspace``."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    @property
    def _url(self) -> str:
        return self._sb._path + "/files"

    async def read(self, path: str) -> bytes:
        response = await self._sb._http.request(
            "GET", self._url + "/content", params={"path": path}, timeout=NO_READ_TIMEOUT
        )
        return response.content

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def write(
        self,
        path: str,
        data: bytes | str | IO[bytes],
        *,
        progress: Progress | None = None,
    ) -> WriteResult:
        """Write a file (parents are created). ``data``: bytes, text or a binary file."""
        if isinstance(data, str):
            data = data.encode()
        headers = {"Content-Type": "application/octet-stream"}
        content: Any = data
        if isinstance(data, bytes):
            size: int | None = len(data)
            if progress is not None:
                content = _chunks(_BytesReader(data), size, progress)
        else:
            size = _file_size(data)
            content = _chunks(data, size, progress)
        if size is not None:
            headers["Content-Length"] = str(size)
        response = await self._sb._http.request(
            "PUT",
            self._url + "/content",
            params={"path": path},
            content=content,
            headers=headers,
            timeout=NO_READ_TIMEOUT,
        )
        body = _json_or_none(response)
        return WriteResult(
            path=str(body.get("path", path)) if body else path,
            created=response.status_code == 201,
            size=(body.get("size") if body else None) or size,
        )

    async def list(self, path: str = ".", *, recursive: bool = False) -> _list[FileEntry]:
        params: dict[str, Any] = {"path": path}
        if recursive:
            params["recursive"] = 1
        data = await self._sb._http.json("GET", self._url, params=params)
        return [FileEntry.from_json(e) for e in data["entries"]]

    async def exists(self, path: str) -> bool:
        return (await self._kind(path)) is not None

    async def is_dir(self, path: str) -> bool:
        return (await self._kind(path)) == "directory"

    async def _kind(self, path: str) -> str | None:
        parent = str(PurePosixPath(path).parent) if path not in ("/", ".", "") else None
        if parent is None:
            return "directory"
        try:
            entries = await self.list(parent)
        except (NotFoundError, InvalidRequestError):
            return None
        name = PurePosixPath(path).name
        for entry in entries:
            if entry.name == name:
                return "directory" if entry.type == "directory" else entry.type
        return None

    async def mkdir(self, path: str) -> None:
        """Make a directory and its parents (no error if it exists)."""
        await self._sb._http.request("POST", self._url + "/mkdir", json={"path": path})

    async def move(self, source: str, destination: str) -> None:
        await self._sb._http.request(
            "POST", self._url + "/move", json={"source": source, "destination": destination}
        )

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file or directory (a non-empty one needs ``recursive=True``)."""
        params: dict[str, Any] = {"path": path}
        if recursive:
            params["recursive"] = 1
        await self._sb._http.request("DELETE", self._url, params=params)

    async def upload(
        self,
        local: str | os.PathLike[str],
        remote_dir: str = ".",
        *,
        progress: Progress | None = None,
    ) -> _list[str]:
        """Upload a local file, or a folder with everything in it, into ``remote_dir``.

        Small files go as one multipart request per directory; large ones are
        streamed one by one. Returns the sandbox paths written.
        """
        source = Path(local)
        if not source.exists():
            raise FileNotFoundError(f"No such local file or folder: {source}")
        groups: dict[str, list[Path]] = {}
        if source.is_dir():
            for root, dirs, names in os.walk(source):
                dirs.sort()
                rel = Path(root).relative_to(source.parent).as_posix()
                groups.setdefault(rel, [])
                for name in sorted(names):
                    if (Path(root) / name).is_file():
                        groups[rel].append(Path(root) / name)
        else:
            groups["."] = [source]
        total = sum(f.stat().st_size for files in groups.values() for f in files)
        meter = _Meter(total, progress)
        written: _list[str] = []
        for rel, files in groups.items():
            target = remote_dir if rel == "." else f"{remote_dir.rstrip('/')}/{rel}"
            if not files:
                await self.mkdir(target)
                continue
            for batch in _batches(files):
                if len(batch) == 1 and batch[0].stat().st_size > SMALL_FILE:
                    with batch[0].open("rb") as handle:
                        await self.write(
                            f"{target.rstrip('/')}/{batch[0].name}",
                            handle,
                            progress=lambda done, _total: meter.set_part(done),
                        )
                    meter.end_part()
                else:
                    await self._upload_batch(target, batch, meter)
                written += [f"{target.rstrip('/')}/{f.name}" for f in batch]
        return written

    async def _upload_batch(self, target: str, files: _list[Path], meter: _Meter) -> None:
        handles = [_ProgressFile(f.open("rb"), meter) for f in files]
        try:
            await self._sb._http.request(
                "POST",
                self._url + "/upload",
                params={"path": target},
                files=[
                    ("files", (f.name, h, "application/octet-stream"))
                    for f, h in zip(files, handles, strict=True)
                ],
                timeout=NO_READ_TIMEOUT,
            )
        finally:
            for handle in handles:
                handle.close()

    async def download(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download a file to ``local``, or a folder (as an archive, extracted) into
        the folder ``local``. Returns the local path written."""
        target = Path(local)
        try:
            async with self._sb._http.stream(
                "GET", self._url + "/content", params={"path": remote}
            ) as response:
                target.parent.mkdir(parents=True, exist_ok=True)
                await _save(response, target, progress)
                return target
        except InvalidRequestError as exc:
            if exc.code not in ("is_a_directory", "bad_request"):
                raise
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "download.tar.gz"
            async with self._sb._http.stream(
                "GET", self._url + "/archive", params={"path": remote}
            ) as response:
                await _save(response, archive, progress)
            target.mkdir(parents=True, exist_ok=True)
            _extract(archive, target)
        return target

    async def watch(
        self, path: str = ".", *, recursive: bool = False, timeout: float | None = None
    ) -> AsyncIterator[FileEvent]:
        """Changes under ``path`` as they happen (Server-Sent Events).

        ``timeout``: stop after that many seconds without an event.
        """
        params: dict[str, Any] = {"path": path}
        if recursive:
            params["recursive"] = 1
        try:
            async for event, data in self._sb._http.events(
                "GET",
                self._url + "/watch",
                params=params,
                timeout=httpx.Timeout(timeout, connect=10.0),
            ):
                if event in ("ping", "ready", "open"):
                    continue
                yield FileEvent.from_sse(event, data)
        except CommandTimeout:
            return


class AsyncGit:
    """Git in the sandbox. ``path`` is the repository (default ``/workspace``);
    ``clone``, ``pull`` and ``push`` take credentials for that one call."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    def _url(self, action: str) -> str:
        return f"{self._sb._path}/git/{action}"

    async def _post(self, action: str, **body: Any) -> Any:
        return await self._sb._http.json(
            "POST", self._url(action), json=_drop_none(**body), timeout=NO_READ_TIMEOUT
        )

    async def _get(self, action: str, **params: Any) -> Any:
        return await self._sb._http.json("GET", self._url(action), params=_drop_none(**params))

    async def clone(
        self,
        url: str,
        path: str | None = None,
        *,
        branch: str | None = None,
        depth: int | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> CloneResult:
        """Clone ``url`` inside the sandbox (``path`` defaults to the repo's name)."""
        data = await self._post(
            "clone",
            url=url,
            path=path,
            branch=branch,
            depth=depth,
            username=username,
            password=password,
            token=token,
        )
        return CloneResult.from_json(data)

    async def status(self, path: str | None = None) -> GitStatus:
        return GitStatus.from_json(await self._get("status", path=path))

    async def log(self, path: str | None = None, *, limit: int = 20) -> _list[GitCommit]:
        data = await self._get("log", path=path, limit=limit)
        return [GitCommit.from_json(c) for c in data["commits"]]

    async def diff(self, path: str | None = None, *, staged: bool = False) -> str:
        return str((await self._get("diff", path=path, staged=staged or None))["diff"])

    async def branches(self, path: str | None = None) -> GitBranches:
        return GitBranches.from_json(await self._get("branches", path=path))

    async def checkout(
        self, branch: str, path: str | None = None, *, create: bool = False
    ) -> GitHead:
        return GitHead.from_json(
            await self._post("checkout", path=path, branch=branch, create=create or None)
        )

    async def add(self, paths: Sequence[str] = (), path: str | None = None) -> GitStatus:
        """Stage ``paths`` (every change when empty)."""
        return GitStatus.from_json(await self._post("add", path=path, paths=list(paths)))

    async def commit(
        self,
        message: str,
        path: str | None = None,
        *,
        all: bool = False,  # noqa: A002 - git's own name
        author_name: str | None = None,
        author_email: str | None = None,
    ) -> GitHead:
        data = await self._post(
            "commit",
            path=path,
            message=message,
            all=all or None,
            author_name=author_name,
            author_email=author_email,
        )
        return GitHead.from_json(data)

    async def pull(self, path: str | None = None, **credentials: str) -> GitHead:
        return GitHead.from_json(await self._post("pull", path=path, **credentials))

    async def push(self, path: str | None = None, **credentials: str) -> GitHead:
        return GitHead.from_json(await self._post("push", path=path, **credentials))


class AsyncProcesses:
    """Background processes: they outlive the request that started them."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    @property
    def _url(self) -> str:
        return self._sb._path + "/processes"

    async def start(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ProcessInfo:
        body = _drop_none(command=_command(command), cwd=cwd, env=env)
        return ProcessInfo.from_json(await self._sb._http.json("POST", self._url, json=body))

    async def list(self) -> _list[ProcessInfo]:
        data = await self._sb._http.json("GET", self._url)
        return [ProcessInfo.from_json(p) for p in data["processes"]]

    async def get(self, pid: int) -> ProcessInfo:
        return ProcessInfo.from_json(await self._sb._http.json("GET", f"{self._url}/{int(pid)}"))

    async def logs(
        self,
        pid: int,
        *,
        follow: bool = False,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
    ) -> ProcessLogs:
        """Its output so far; ``follow=True`` streams (to the callbacks) until it exits."""
        url = f"{self._url}/{int(pid)}/logs"
        if not follow:
            data = await self._sb._http.json("GET", url)
            return ProcessLogs(stdout=data.get("stdout", ""), stderr=data.get("stderr", ""))
        logs = ProcessLogs(stdout="", stderr="")
        async for event, data in self._sb._http.events("GET", url, params={"follow": 1}):
            if event == "stdout":
                logs.stdout += _text(data)
                if on_stdout is not None:
                    await _io.maybe_await(on_stdout(_text(data)))
            elif event == "stderr":
                logs.stderr += _text(data)
                if on_stderr is not None:
                    await _io.maybe_await(on_stderr(_text(data)))
            elif event == "exit" and isinstance(data, dict):
                logs.exit_code = data.get("exit_code")
        return logs

    async def kill(self, pid: int, signal: str = "TERM") -> None:
        await self._sb._http.request("DELETE", f"{self._url}/{int(pid)}", params={"signal": signal})

    async def wait(self, pid: int, *, timeout: float = 60, interval: float = 0.2) -> ProcessInfo:
        """Wait until the process exits; CommandTimeout after ``timeout`` seconds."""
        deadline = _deadline(timeout)
        while True:
            info = await self.get(pid)
            if not info.running:
                return info
            if _expired(deadline):
                raise CommandTimeout(f"Process {pid} still runs after {timeout} s.")
            await _io.sleep(interval)

    async def wait_for_port(
        self,
        port: int,
        *,
        pid: int | None = None,
        timeout: float = 60,
        interval: float = 0.2,
    ) -> None:
        """Wait until something in the sandbox listens on TCP ``port``.

        With the ``pid`` of the server process the wait runs in the sandbox and fails
        at once if that process exits first.
        """
        if pid is not None:
            await self._sb._http.json(
                "POST",
                f"{self._url}/{int(pid)}/wait-for-port",
                json={"port": int(port), "timeout": timeout},
                timeout=httpx.Timeout(timeout + 30, connect=10.0),
            )
            return
        deadline = _deadline(timeout)
        while True:
            ports = await self._sb.ports.list()
            if int(port) in ports.listening:
                return
            if _expired(deadline):
                raise CommandTimeout(
                    f"Nothing listens on port {port} after {timeout} s: check the "
                    "server's logs (processes.logs(pid)) and that it binds 0.0.0.0 or "
                    "127.0.0.1."
                )
            await _io.sleep(interval)

    async def wait_for_log(
        self, pid: int, pattern: str | re.Pattern[str], *, timeout: float = 60
    ) -> str:
        """Wait until the process prints a line (stdout or stderr, so far or to come)
        matching the regular expression ``pattern``; returns that line.

        CommandTimeout after ``timeout`` s; ConflictError (code ``process_exited``)
        if the process ends first.
        """
        regex = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        data = await self._sb._http.json(
            "POST",
            f"{self._url}/{int(pid)}/wait-for-log",
            json={"pattern": regex, "timeout": timeout},
            timeout=httpx.Timeout(timeout + 30, connect=10.0),
        )
        return str(data.get("line", data.get("match", "")))


class AsyncSessions:
    """Shell sessions: execs that name one share its cwd and environment."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    @property
    def _url(self) -> str:
        return self._sb._path + "/sessions"

    async def create(
        self,
        id: str | None = None,  # noqa: A002 - the API's name
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> SessionInfo:
        body = _drop_none(id=id, cwd=cwd, env=env)
        return SessionInfo.from_json(await self._sb._http.json("POST", self._url, json=body))

    async def list(self) -> _list[SessionInfo]:
        data = await self._sb._http.json("GET", self._url)
        return [SessionInfo.from_json(item) for item in data["sessions"]]

    async def get(self, session_id: str) -> SessionInfo:
        data = await self._sb._http.json("GET", f"{self._url}/{quote(session_id, safe='')}")
        return SessionInfo.from_json(data)

    async def delete(self, session: SessionInfo | str) -> None:
        sid = session.id if isinstance(session, SessionInfo) else session
        await self._sb._http.request("DELETE", f"{self._url}/{quote(sid, safe='')}")


class AsyncPorts:
    """Expose ports of the sandbox at preview URLs (anyone with the URL can open it)."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    async def expose(self, port: int, name: str | None = None) -> ExposedPort:
        data = await self._sb._http.json(
            "POST", self._sb._path + "/ports", json=_drop_none(port=int(port), name=name)
        )
        return ExposedPort.from_json(data)

    async def list(self) -> PortList:
        return PortList.from_json(await self._sb._http.json("GET", self._sb._path + "/ports"))

    async def unexpose(self, port: int) -> None:
        """Revoke the port's URL at once."""
        await self._sb._http.request("DELETE", f"{self._sb._path}/ports/{int(port)}")


class AsyncTerminals:
    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    async def list(self) -> _list[TerminalInfo]:
        data = await self._sb._http.json("GET", self._sb._path + "/terminals")
        return [TerminalInfo.from_json(t) for t in data["terminals"]]

    async def kill(self, name: str) -> None:
        """End the terminal's shell."""
        await self._sb._http.request("DELETE", f"{self._sb._path}/terminals/{quote(name, safe='')}")


class AsyncTerminal:
    """An interactive PTY in the sandbox over a WebSocket: ``send`` keystrokes,
    ``recv`` output (``b""`` once the shell has exited, see ``exit_code``)."""

    def __init__(self, sandbox: AsyncSandbox, name: str, cols: int = 80, rows: int = 24) -> None:
        self.sandbox = sandbox
        self.name = name
        self.cols, self.rows = cols, rows
        self.exit_code: int | None = None
        self.closed = False
        self._ws: Any = None
        self._buffer = b""

    @property
    def url(self) -> str:
        query = urlencode({"cols": self.cols, "rows": self.rows})
        return (
            f"{ws_url(self.sandbox._http.url)}/ws/sandboxes/{self.sandbox.id}"
            f"/terminals/{quote(self.name, safe='')}?{query}"
        )

    async def connect(self, timeout: float = 60) -> AsyncTerminal:
        if self._ws is not None:
            return self
        headers = {
            "Authorization": f"Bearer {self.sandbox._http.token}",
            "User-Agent": USER_AGENT,
        }
        try:
            self._ws = await _io.ws_connect(self.url, headers, timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body: Any = None
            with contextlib.suppress(ValueError):
                import json

                body = json.loads(exc.response.body or b"")
            raise from_response(
                status, body, f"The terminal WebSocket was refused (HTTP {status})."
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"Could not open the terminal at {self.url}: {exc}.") from exc
        return self

    async def send(self, data: bytes | str) -> None:
        """Send keystrokes (text is UTF-8 encoded)."""
        await self.connect()
        await self._ws.send(data.encode() if isinstance(data, str) else bytes(data))

    async def resize(self, cols: int, rows: int) -> None:
        import json

        await self.connect()
        self.cols, self.rows = cols, rows
        await self._ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    async def recv(self, timeout: float | None = None) -> bytes:
        """The next output; ``b""`` when the shell has exited or the connection closed.
        CommandTimeout if nothing came within ``timeout`` seconds."""
        import json

        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        await self.connect()
        while not self.closed:
            try:
                message = await _io.ws_recv(self._ws, timeout)
            except TimeoutError as exc:
                raise CommandTimeout(f"No terminal output within {timeout} s.") from exc
            except ConnectionClosed:
                self.closed = True
                return b""
            if isinstance(message, bytes):
                return message
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "exit":
                self.exit_code = event.get("exit_code")
                self.closed = True
                return b""
            if isinstance(event, dict) and event.get("type") == "error":
                raise from_event(event)
        return b""

    async def expect(self, pattern: bytes | str | re.Pattern[bytes], timeout: float = 30) -> bytes:
        """Read until the output matches ``pattern``; returns the output up to and
        including the match (the rest stays for the next ``recv``)."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        seen = b""
        deadline = _deadline(timeout)
        while True:
            match = regex.search(seen)
            if match:
                self._buffer = seen[match.end() :] + self._buffer
                return seen[: match.end()]
            left = _left(deadline)
            if left <= 0:
                self._buffer = seen + self._buffer
                raise CommandTimeout(
                    f"The terminal did not print {regex.pattern!r} within {timeout} s; "
                    f"last output: {seen[-200:]!r}"
                )
            try:
                chunk = await self.recv(timeout=left)
            except CommandTimeout:
                continue
            if not chunk and self.closed:
                self._buffer = seen
                raise SandboxIDEError(
                    f"The terminal closed before printing {regex.pattern!r}.", code="closed"
                )
            seen += chunk

    async def close(self) -> None:
        """Detach (the shell keeps running; ``sandbox.terminals.kill(name)`` ends it)."""
        if self._ws is not None:
            await self._ws.close()
        self.closed = True

    async def __aenter__(self) -> AsyncTerminal:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- classroom: templates and courses ------------------------------------------------------


def _template_id(template: AsyncTemplate | TemplateInfo | str) -> str:
    if isinstance(template, AsyncTemplate):
        return template.id
    if isinstance(template, TemplateInfo):
        return template.id
    return str(template)


def _starter_parts(files: Any) -> _list[tuple[str, bytes]]:
    """``(path in the starter, content)`` for a ``{path: content}`` mapping (bytes,
    text, or a local file's path), a local folder (its contents at the root, ``.git``
    left out) or local files (each by its name)."""
    parts: _list[tuple[str, bytes]] = []
    if isinstance(files, dict):
        for path, content in files.items():
            if isinstance(content, str):
                parts.append((str(path), content.encode()))
            elif isinstance(content, bytes | bytearray | memoryview):
                parts.append((str(path), bytes(content)))
            elif isinstance(content, os.PathLike):
                parts.append((str(path), Path(content).read_bytes()))
            else:
                raise TypeError(f"The content of {path!r} must be bytes, text or a local path.")
        return parts
    sources = [files] if isinstance(files, str | os.PathLike) else _list(files)
    for item in sources:
        source = Path(item)
        if not source.exists():
            raise FileNotFoundError(f"No such local file or folder: {source}")
        if source.is_file():
            parts.append((source.name, source.read_bytes()))
            continue
        for root, dirs, names in os.walk(source):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for name in sorted(names):
                local = Path(root) / name
                if local.is_file():
                    parts.append((local.relative_to(source).as_posix(), local.read_bytes()))
    return parts


class AsyncTemplate:
    """A template: image, starter code, setup command, env, limits and IDE hints that
    sandboxes (and a course's students' sandboxes) are made from.

    ``AsyncTemplate.create("py101", files="starter/")`` makes one;
    ``AsyncSandbox.get_or_create(name, template=t)`` or a course uses it.
    """

    def __init__(self, info: TemplateInfo, http: AsyncHTTP) -> None:
        self.info = info
        self._http = http

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id={self.id}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def _path(self) -> str:
        return f"/templates/{quote(self.info.id, safe='')}"

    @classmethod
    async def create(
        cls,
        name: str,
        files: Any = None,
        *,
        description: str | None = None,
        image: str | None = None,
        repo_url: str | None = None,
        repo_branch: str | None = None,
        setup_command: str | None = None,
        env: dict[str, str] | None = None,
        limits: dict[str, Any] | None = None,
        open_files: Sequence[str] | None = None,
        preview_port: int | None = None,
        warm_pool: int | None = None,
        message: str | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> AsyncTemplate:
        """Make a template. Starter code comes from ``repo_url`` (fetched now; 400
        ``git_error`` with git's reason) and/or ``files``: ``{path: bytes | text |
        local path}``, a local folder, or a list of local files (see ``upload``).

        ``warm_pool``: how many ready sandboxes to keep for its courses' joins.
        """
        http = AsyncHTTP(url, token)
        body = _drop_none(
            name=name,
            description=description,
            image=image,
            repo_url=repo_url,
            repo_branch=repo_branch,
            setup_command=setup_command,
            env=env,
            limits=limits,
            open_files=_list(open_files) if open_files is not None else None,
            preview_port=preview_port,
            warm_pool=warm_pool,
        )
        try:
            parts = _starter_parts(files) if files is not None else []
            data = await http.json("POST", "/templates", json=body, timeout=NO_READ_TIMEOUT)
            template = cls(TemplateInfo.from_json(data), http)
        except BaseException:
            await http.aclose()
            raise
        if parts:
            try:
                await template._put_files(parts, message)
            except BaseException:
                with contextlib.suppress(SandboxIDEError):
                    await template.delete()
                raise
        return template

    @classmethod
    async def get(
        cls, template_id: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncTemplate:
        """A template by id (yours; NotFoundError for anyone else's)."""
        http = AsyncHTTP(url, token)
        data = await http.owned_json("GET", f"/templates/{quote(template_id, safe='')}")
        return cls(TemplateInfo.from_json(data), http)

    @classmethod
    async def from_name(
        cls, name: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncTemplate:
        """One of your templates by name (or id)."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/templates")
            for item in data["templates"]:
                if name in (item["name"], item["id"]):
                    return cls(TemplateInfo.from_json(item), http)
            raise NotFoundError(
                f"You have no template named {name!r}: create it with "
                f"Template.create({name!r}, files=...) or `sandbox-ide template create {name}`.",
                status=404,
            )
        except BaseException:
            await http.aclose()
            raise

    @classmethod
    async def list(cls, *, url: str | None = None, token: str | None = None) -> _list[TemplateInfo]:
        """Your templates."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/templates")
        finally:
            await http.aclose()
        return [TemplateInfo.from_json(item) for item in data["templates"]]

    async def refresh(self) -> TemplateInfo:
        """Reload ``info`` from the server."""
        self.info = TemplateInfo.from_json(await self._http.json("GET", self._path))
        return self.info

    async def update(self, **changes: Any) -> TemplateInfo:
        """Change fields (``name``, ``description``, ``image``, ``repo_url``,
        ``repo_branch``, ``setup_command``, ``env``, ``limits``, ``open_files``,
        ``preview_port``, ``warm_pool``); a new ``repo_url`` is fetched at once."""
        data = await self._http.json("PATCH", self._path, json=changes, timeout=NO_READ_TIMEOUT)
        self.info = TemplateInfo.from_json(data)
        return self.info

    async def upload(self, files: Any, *, message: str | None = None) -> TemplateInfo:
        """Commit files on top of the starter code: ``{path: bytes | text | local
        path}`` (a path like ``src/app.py`` keeps its folders), a local folder (its
        contents land at the starter's root) or a list of local files (by name).
        Existing courses get it with ``course.push_update()``."""
        parts = _starter_parts(files)
        if not parts:
            raise InvalidRequestError("Give at least one file to upload.", code="invalid_upload")
        return await self._put_files(parts, message)

    async def _put_files(
        self, parts: _list[tuple[str, bytes]], message: str | None
    ) -> TemplateInfo:
        # Each part's field name is its path in the starter.
        data = await self._http.json(
            "PUT",
            self._path + "/files",
            files=[
                (path, (PurePosixPath(path).name or "file", content, "application/octet-stream"))
                for path, content in parts
            ],
            data=_drop_none(message=message),
            timeout=NO_READ_TIMEOUT,
        )
        self.info = TemplateInfo.from_json(data)
        return self.info

    async def refresh_repo(self) -> TemplateInfo:
        """Fetch the template's repository again (its branch's newest commit)."""
        data = await self._http.json("POST", self._path + "/refresh", timeout=NO_READ_TIMEOUT)
        self.info = TemplateInfo.from_json(data)
        return self.info

    async def delete(self) -> None:
        """Delete the template (ConflictError ``template_in_use`` while a course
        uses it), then close the client."""
        try:
            await self._http.request("DELETE", self._path)
        finally:
            await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTemplate:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _invite_token(invite: str) -> str:
    """The token of an invite: the token itself or the link (``.../join/TOKEN/``)."""
    match = re.search(r"/join/([^/?#]+)", invite)
    return match.group(1) if match else invite.strip()


class AsyncCourse:
    """A course on a template. Its teacher makes invite links, sees the roster,
    resets a student's workspace (archived first) and pushes starter updates;
    students join with an invite's token and get their own sandbox.

    A teacher reads (never writes) a student's sandbox with
    ``AsyncSandbox.connect(student.sandbox_id)`` or ``course.student_sandbox(s)``;
    writes raise PermissionDeniedError with code ``read_only``.
    """

    def __init__(self, info: CourseInfo, http: AsyncHTTP) -> None:
        self.info = info
        self._http = http

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id={self.id} role={self.info.role}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def _path(self) -> str:
        return f"/courses/{quote(self.info.id, safe='')}"

    # -- finding and making courses -------------------------------------------------------

    @classmethod
    async def create(
        cls,
        name: str,
        template: AsyncTemplate | TemplateInfo | str,
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> AsyncCourse:
        """Start a course on one of your templates; you are its teacher."""
        http = AsyncHTTP(url, token)
        data = await http.owned_json(
            "POST", "/courses", json={"name": name, "template": _template_id(template)}
        )
        return cls(CourseInfo.from_json(data), http)

    @classmethod
    async def get(
        cls, course_id: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncCourse:
        """A course you teach or joined, by id."""
        http = AsyncHTTP(url, token)
        data = await http.owned_json("GET", f"/courses/{quote(course_id, safe='')}")
        return cls(CourseInfo.from_json(data), http)

    @classmethod
    async def from_name(
        cls, name: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncCourse:
        """A course you teach or joined, by name (or id); taught ones come first."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/courses")
            for item in [*data["teaching"], *data["enrolled"]]:
                if name in (item["name"], item["id"]):
                    return cls(CourseInfo.from_json(item), http)
            raise NotFoundError(
                f"You teach or attend no course named {name!r}: `sandbox-ide course list` "
                "shows yours.",
                status=404,
            )
        except BaseException:
            await http.aclose()
            raise

    @classmethod
    async def list(cls, *, url: str | None = None, token: str | None = None) -> _list[CourseInfo]:
        """Courses you teach (``role == "teacher"``) and courses you joined."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/courses")
        finally:
            await http.aclose()
        return [CourseInfo.from_json(item) for item in [*data["teaching"], *data["enrolled"]]]

    @classmethod
    async def invite_details(
        cls, invite: str, *, url: str | None = None, token: str | None = None
    ) -> InviteDetails:
        """What an invite (its token or link) leads to; GoneError if it expired or
        was revoked."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", f"/invites/{quote(_invite_token(invite), safe='')}")
        finally:
            await http.aclose()
        return InviteDetails.from_json(data)

    @classmethod
    async def join(
        cls, invite: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncSandbox:
        """Join a course with an invite's token (or its link): your own sandbox from
        the course's template, ready, with the starter code. Joining again returns
        the same sandbox. GoneError if the invite expired or was revoked.
        ``sandbox.joined`` says how it went."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json(
                "POST",
                f"/invites/{quote(_invite_token(invite), safe='')}/join",
                timeout=NO_READ_TIMEOUT,
            )
            joined = JoinResult.from_json(data)
            info = await http.json("GET", f"/sandboxes/{quote(joined.sandbox, safe='')}")
        except BaseException:
            await http.aclose()
            raise
        sandbox = AsyncSandbox(SandboxInfo.from_json(info), http)
        sandbox.joined = joined
        return sandbox

    # -- the course -----------------------------------------------------------------------

    async def refresh(self) -> CourseInfo:
        self.info = CourseInfo.from_json(await self._http.json("GET", self._path))
        return self.info

    async def delete(self) -> None:
        """Delete the course (students keep their sandboxes), then close the client."""
        try:
            await self._http.request("DELETE", self._path)
        finally:
            await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCourse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- invites ----------------------------------------------------------------------------

    async def invite(self, days: float | None = None) -> Invite:
        """A new invite link, valid for ``days`` (the server's default: 14)."""
        data = await self._http.json(
            "POST", self._path + "/invites", json=_drop_none(expires_in_days=days)
        )
        return Invite.from_json(data, self._http.url)

    async def invites(self) -> _list[Invite]:
        data = await self._http.json("GET", self._path + "/invites")
        return [Invite.from_json(i, self._http.url) for i in data["invites"]]

    async def revoke_invite(self, invite: Invite | int) -> Invite:
        """Revoke an invite at once (students who joined stay)."""
        invite_id = invite.id if isinstance(invite, Invite) else int(invite)
        data = await self._http.json("DELETE", f"{self._path}/invites/{invite_id}")
        return Invite.from_json(data, self._http.url)

    # -- the teacher's view -------------------------------------------------------------------

    async def roster(self) -> _list[Student]:
        """Each student with their sandbox's status, last activity and starter version."""
        data = await self._http.json("GET", self._path + "/students")
        return [Student.from_json(s) for s in data["students"]]

    async def _student_id(self, student: Student | int | str) -> int:
        if isinstance(student, Student):
            return student.id
        if isinstance(student, int):
            return student
        for row in await self.roster():
            if row.username == student:
                return row.id
        raise NotFoundError(f"No student {student!r} in course {self.name!r}.", status=404)

    async def student_sandbox(self, student: Student | int | str) -> AsyncSandbox:
        """A student's sandbox, to read (the teacher may look, never change)."""
        if isinstance(student, Student) and student.sandbox_id:
            sandbox_id = student.sandbox_id
        else:
            wanted = student.id if isinstance(student, Student) else student
            rows = [s for s in await self.roster() if wanted in (s.id, s.username)]
            if not rows:
                raise NotFoundError(f"No student {wanted!r} in course {self.name!r}.", status=404)
            if not rows[0].sandbox_id:
                raise NotFoundError(f"Student {wanted!r} has no sandbox yet.", status=404)
            sandbox_id = rows[0].sandbox_id
        return await AsyncSandbox.connect(sandbox_id, url=self._http.url, token=self._http.token)

    async def reset(self, student: Student | int | str) -> Archive:
        """Archive the student's ``/workspace`` (kept on the server; see
        ``download_archive``), empty it and install the starter code afresh."""
        student_id = await self._student_id(student)
        data = await self._http.json(
            "POST", f"{self._path}/students/{student_id}/reset", timeout=NO_READ_TIMEOUT
        )
        return Archive.from_json(data)

    async def archives(self, student: Student | int | str) -> _list[Archive]:
        """The archives of a student's reset workspaces, oldest first."""
        student_id = await self._student_id(student)
        data = await self._http.json("GET", f"{self._path}/students/{student_id}/archives")
        return [Archive.from_json(a) for a in data["archives"]]

    async def download_archive(
        self,
        archive: Archive | int,
        local: str | os.PathLike[str],
        *,
        extract: bool = False,
        progress: Progress | None = None,
    ) -> Path:
        """Save an archive (a ``.tar.gz``) to ``local``, or into it when it is a
        folder; with ``extract=True`` unpack it into the folder ``local`` instead
        (the files are under ``workspace/`` in it)."""
        archive_id = archive.id if isinstance(archive, Archive) else int(archive)
        target = Path(local)
        async with self._http.stream("GET", f"{self._path}/archives/{archive_id}") as response:
            if extract:
                with tempfile.TemporaryDirectory() as tmp:
                    saved = Path(tmp) / "archive.tar.gz"
                    await _save(response, saved, progress)
                    target.mkdir(parents=True, exist_ok=True)
                    _extract(saved, target)
                return target
            if target.is_dir():
                match = re.search(
                    r'filename="?([^";]+)"?', response.headers.get("content-disposition", "")
                )
                name = PurePosixPath(match.group(1)).name if match else ""
                target = target / (name or f"archive-{archive_id}.tar.gz")
            target.parent.mkdir(parents=True, exist_ok=True)
            await _save(response, target, progress)
        return target

    async def push_update(self) -> CourseUpdate:
        """Fetch the starter again (from its repository, if any) and merge it into
        every student's workspace; their edits are never overwritten (conflicts are
        kept beside, see each report's ``conflicts``)."""
        data = await self._http.json("POST", self._path + "/update", timeout=NO_READ_TIMEOUT)
        return CourseUpdate.from_json(data)

    # -- sharing ---------------------------------------------------------------------------------

    async def shares(self) -> _list[Share]:
        """What students share with the class."""
        data = await self._http.json("GET", self._path + "/shares")
        return [Share.from_json(s) for s in data["shares"]]

    async def share(
        self,
        sandbox: AsyncSandbox | str,
        kind: str = "view",
        *,
        port: int | None = None,
    ) -> Share:
        """Share one of your sandboxes with the class: a read-only ``view``, or a
        ``preview`` of ``port`` (exposed if it is not yet)."""
        sandbox_id = sandbox.id if isinstance(sandbox, AsyncSandbox) else sandbox
        data = await self._http.json(
            "POST",
            self._path + "/shares",
            json=_drop_none(sandbox=sandbox_id, kind=kind, port=port),
        )
        return Share.from_json(data)

    async def unshare(self, share: Share | int) -> None:
        """Stop sharing (the student who shared, or the teacher); a preview URL dies."""
        share_id = share.id if isinstance(share, Share) else int(share)
        await self._http.request("DELETE", f"{self._path}/shares/{share_id}")


# -- helpers ------------------------------------------------------------------------------


def _deadline(timeout: float) -> float:
    import time

    return time.monotonic() + timeout


def _left(deadline: float) -> float:
    import time

    return deadline - time.monotonic()


def _expired(deadline: float) -> bool:
    return _left(deadline) <= 0


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _file_size(stream: IO[bytes]) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size - stream.tell()
    except (AttributeError, OSError, ValueError):
        return None


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk


async def _chunks(
    stream: Any, total: int | None, progress: Progress | None
) -> AsyncIterator[bytes]:
    done = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        done += len(chunk)
        if progress is not None:
            progress(done, total)
        yield chunk


SMALL_FILE = 1024 * 1024  # larger files are streamed with PUT, not sent as multipart
BATCH_BYTES = 8 * 1024 * 1024


def _batches(files: _list[Path]) -> _list[list[Path]]:
    """Small files grouped (up to BATCH_BYTES a request); each large file alone."""
    batches: _list[list[Path]] = []
    current: _list[Path] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if length > SMALL_FILE:
            batches.append([path])
            continue
        if current and size + length > BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        batches.append(current)
    return batches


class _Meter:
    """Progress over many files: ``add`` counts bytes; ``set_part`` / ``end_part``
    follow one streamed file."""

    def __init__(self, total: int | None, progress: Progress | None) -> None:
        self.total, self.done, self.part, self.progress = total, 0, 0, progress

    def add(self, n: int) -> None:
        self.done += n
        self._report()

    def set_part(self, done: int) -> None:
        self.part = done
        self._report()

    def end_part(self) -> None:
        self.done, self.part = self.done + self.part, 0

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done + self.part, self.total)


class _ProgressFile:
    """A binary file that reports reads to a meter (httpx streams multipart from it)."""

    def __init__(self, raw: IO[bytes], meter: _Meter) -> None:
        self._raw, self._meter = raw, meter

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._meter.add(len(chunk))
        return chunk

    def fileno(self) -> int:
        return self._raw.fileno()

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def close(self) -> None:
        self._raw.close()


async def _save(response: httpx.Response, target: Path, progress: Progress | None) -> None:
    length = response.headers.get("content-length")
    total = int(length) if length and length.isdigit() else None
    done = 0
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as out:
            async for chunk in response.aiter_bytes(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _extract(archive: Path, target: Path) -> None:
    """Extract a downloaded archive, refusing links and paths that leave ``target``."""
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
            return
        root = target.resolve()
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not dest.is_relative_to(root) or member.issym() or member.islnk():
                raise SandboxIDEError(f"Refusing archive member {member.name!r}.")
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is not None:
                    with source, dest.open("wb") as out:
                        shutil.copyfileobj(source, out)
