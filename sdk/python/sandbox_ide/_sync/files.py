# GENERATED from sandbox_ide/_async/files.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""Files: reading, writing, listing, uploading, downloading and watching ``/workspace``."""

from __future__ import annotations

import builtins
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import httpx

from .. import _transfer
from .._transfer import Download, Meter, Progress, ProgressFile, Reader
from .._wire import CHUNK, NO_READ_TIMEOUT, json_or_none, read_timeout
from ..errors import CommandTimeout, InvalidRequestError, NotFoundError
from ..models import FileEntry, FileEvent, WriteResult
from .resource import Part


def _chunks(stream: Reader, total: int | None, progress: Progress | None) -> Iterator[bytes]:
    """The body of a streamed upload, as the iterator kind this client's httpx takes."""
    for chunk in _transfer.read_chunks(stream, total, progress):  # noqa: UP028 - async in _async/
        yield chunk


def save(response: httpx.Response, target: Path, progress: Progress | None) -> None:
    """Save a streamed answer's body to ``target`` (complete, or not at all)."""
    with Download(target, response.headers, progress) as download:
        for chunk in response.iter_bytes(CHUNK):
            download.write(chunk)


class Files(Part):
    """Files in the sandbox; relative paths are relative to ``/workspace``."""

    _prefix = "files"

    def read(self, path: str) -> bytes:
        response = self._http.request(
            "GET", self._url("content"), params={"path": path}, timeout=NO_READ_TIMEOUT
        )
        return response.content

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (self.read(path)).decode(encoding)

    def write(
        self,
        path: str,
        data: bytes | str | IO[bytes],
        *,
        progress: Progress | None = None,
    ) -> WriteResult:
        """Write a file (parents are created). ``data``: bytes, text or a binary file."""
        source, size = _transfer.write_source(data, progress)
        content: Any = source if isinstance(source, bytes) else _chunks(source, size, progress)
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        response = self._http.request(
            "PUT",
            self._url("content"),
            params={"path": path},
            content=content,
            headers=headers,
            timeout=NO_READ_TIMEOUT,
        )
        body = json_or_none(response)
        return WriteResult(
            path=str(body.get("path", path)) if body else path,
            created=response.status_code == 201,
            size=(body.get("size") if body else None) or size,
        )

    def list(self, path: str = ".", *, recursive: bool = False) -> builtins.list[FileEntry]:
        params: dict[str, Any] = {"path": path}
        if recursive:
            params["recursive"] = 1
        data = self._http.json("GET", self._url(), params=params)
        return [FileEntry.from_json(e) for e in data["entries"]]

    def exists(self, path: str) -> bool:
        return (self._kind(path)) is not None

    def is_dir(self, path: str) -> bool:
        return (self._kind(path)) == "directory"

    def _kind(self, path: str) -> str | None:
        if path in ("/", ".", ""):
            return "directory"
        try:
            entries = self.list(str(PurePosixPath(path).parent))
        except (NotFoundError, InvalidRequestError):
            return None
        name = PurePosixPath(path).name
        for entry in entries:
            if entry.name == name:
                return entry.type
        return None

    def mkdir(self, path: str) -> None:
        """Make a directory and its parents (no error if it exists)."""
        self._http.request("POST", self._url("mkdir"), json={"path": path})

    def move(self, source: str, destination: str) -> None:
        self._http.request(
            "POST", self._url("move"), json={"source": source, "destination": destination}
        )

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file or directory (a non-empty one needs ``recursive=True``)."""
        params: dict[str, Any] = {"path": path}
        if recursive:
            params["recursive"] = 1
        self._http.request("DELETE", self._url(), params=params)

    def upload(
        self,
        local: str | os.PathLike[str],
        remote_dir: str = ".",
        *,
        progress: Progress | None = None,
    ) -> builtins.list[str]:
        """Upload a local file, or a folder with everything in it, into ``remote_dir``.

        Small files go as one multipart request per directory; large ones are
        streamed one by one. Returns the sandbox paths written.
        """
        groups = _transfer.upload_groups(Path(local))
        total = sum(f.stat().st_size for files in groups.values() for f in files)
        meter = Meter(total, progress)
        written: builtins.list[str] = []
        for rel, files in groups.items():
            target = remote_dir if rel == "." else f"{remote_dir.rstrip('/')}/{rel}"
            if not files:
                self.mkdir(target)
                continue
            for batch in _transfer.batches(files):
                if len(batch) == 1 and batch[0].stat().st_size > _transfer.SMALL_FILE:
                    with batch[0].open("rb") as handle:
                        self.write(
                            f"{target.rstrip('/')}/{batch[0].name}", handle, progress=meter.set_part
                        )
                    meter.end_part()
                else:
                    self._upload_batch(target, batch, meter)
                written += [f"{target.rstrip('/')}/{f.name}" for f in batch]
        return written

    def _upload_batch(self, target: str, files: builtins.list[Path], meter: Meter) -> None:
        handles = [ProgressFile(f.open("rb"), meter) for f in files]
        try:
            self._http.request(
                "POST",
                self._url("upload"),
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

    def download(
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
            with self._http.stream(
                "GET", self._url("content"), params={"path": remote}
            ) as response:
                target.parent.mkdir(parents=True, exist_ok=True)
                save(response, target, progress)
                return target
        except InvalidRequestError as exc:
            if exc.code not in ("is_a_directory", "bad_request"):
                raise
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "download.tar.gz"
            with self._http.stream(
                "GET", self._url("archive"), params={"path": remote}
            ) as response:
                save(response, archive, progress)
            target.mkdir(parents=True, exist_ok=True)
            _transfer.extract(archive, target)
        return target

    def watch(
        self, path: str = ".", *, recursive: bool = False, timeout: float | None = None
    ) -> Iterator[FileEvent]:
        """Changes under ``path`` as they happen (Server-Sent Events).

        ``timeout``: stop after that many seconds without an event.
        """
        params: dict[str, Any] = {"path": path}
        if recursive:
            params["recursive"] = 1
        try:
            for event, data in self._http.events(
                "GET", self._url("watch"), params=params, timeout=read_timeout(timeout)
            ):
                if event in ("ping", "ready", "open"):
                    continue
                yield FileEvent.from_sse(event, data)
        except CommandTimeout:
            return
