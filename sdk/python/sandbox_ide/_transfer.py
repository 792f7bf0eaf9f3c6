"""Local files for uploads and downloads, shared by both clients: what to send and
in which batches, progress reports, saving and unpacking what came back."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any, Protocol

from ._wire import CHUNK
from .errors import SandboxIDEError

Progress = Callable[[int, int | None], Any]
"""``progress(bytes_done, bytes_total_or_None)``, called as a transfer advances."""

SMALL_FILE = 1024 * 1024  # larger files are streamed with PUT, not sent as multipart
BATCH_BYTES = 8 * 1024 * 1024


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk


def file_size(stream: IO[bytes]) -> int | None:
    """What is left to read of an open file, or None when it cannot be told."""
    try:
        return os.fstat(stream.fileno()).st_size - stream.tell()
    except (AttributeError, OSError, ValueError):
        return None


def write_source(
    data: bytes | str | IO[bytes], progress: Progress | None
) -> tuple[bytes | Reader, int | None]:
    """What ``files.write`` sends: whole bytes, or a reader to stream in chunks (for
    a file, or when progress is reported), with its size if known."""
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes):
        return (data if progress is None else BytesReader(data)), len(data)
    return data, file_size(data)


def read_chunks(stream: Reader, total: int | None, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        done += len(chunk)
        if progress is not None:
            progress(done, total)
        yield chunk


def upload_groups(source: Path) -> dict[str, list[Path]]:
    """The local files to upload by folder, relative to ``source``'s parent (``.`` for
    a single file); an empty folder maps to no files."""
    if not source.exists():
        raise FileNotFoundError(f"No such local file or folder: {source}")
    if not source.is_dir():
        return {".": [source]}
    groups: dict[str, list[Path]] = {}
    for root, dirs, names in os.walk(source):
        dirs.sort()
        rel = Path(root).relative_to(source.parent).as_posix()
        groups.setdefault(rel, [])
        for name in sorted(names):
            if (Path(root) / name).is_file():
                groups[rel].append(Path(root) / name)
    return groups


def batches(files: list[Path]) -> list[list[Path]]:
    """Small files grouped (up to BATCH_BYTES a request); each large file alone."""
    result: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if length > SMALL_FILE:
            result.append([path])
            continue
        if current and size + length > BATCH_BYTES:
            result.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        result.append(current)
    return result


class Meter:
    """Progress over many files: ``add`` counts bytes; ``set_part`` / ``end_part``
    follow one streamed file."""

    def __init__(self, total: int | None, progress: Progress | None) -> None:
        self.total, self.done, self.part, self.progress = total, 0, 0, progress

    def add(self, n: int) -> None:
        self.done += n
        self._report()

    def set_part(self, done: int, _total: int | None = None) -> None:
        self.part = done
        self._report()

    def end_part(self) -> None:
        self.done, self.part = self.done + self.part, 0

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done + self.part, self.total)


class ProgressFile:
    """A binary file that reports reads to a meter (httpx streams multipart from it)."""

    def __init__(self, raw: IO[bytes], meter: Meter) -> None:
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


class Download:
    """A download into ``target``: written beside it (``.part``) and moved into place
    only once complete, reporting progress against the answer's Content-Length."""

    _file: IO[bytes]

    def __init__(self, target: Path, headers: Mapping[str, str], progress: Progress | None) -> None:
        length = headers.get("content-length")
        self.total = int(length) if length and length.isdigit() else None
        self.target, self.progress, self.done = target, progress, 0
        self.partial = target.with_name(target.name + ".part")

    def __enter__(self) -> Download:
        self._file = self.partial.open("wb")
        return self

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.done += len(chunk)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file.close()
        try:
            if exc_type is None:
                self.partial.replace(self.target)
        finally:
            self.partial.unlink(missing_ok=True)


def archive_name(headers: Mapping[str, str], archive_id: int) -> str:
    """The file name an archive download offers (Content-Disposition), or a default."""
    match = re.search(r'filename="?([^";]+)"?', headers.get("content-disposition", ""))
    name = PurePosixPath(match.group(1)).name if match else ""
    return name or f"archive-{archive_id}.tar.gz"


def extract(archive: Path, target: Path) -> None:
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


def starter_parts(files: Any) -> list[tuple[str, bytes]]:
    """``(path in the starter, content)`` for a ``{path: content}`` mapping (bytes,
    text, or a local file's path), a local folder (its contents at the root, ``.git``
    left out) or local files (each by its name)."""
    parts: list[tuple[str, bytes]] = []
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
    sources = [files] if isinstance(files, str | os.PathLike) else list(files)
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


def starter_files(parts: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart fields of a starter upload: each field's name is its path."""
    return [
        (path, (PurePosixPath(path).name or "file", content, "application/octet-stream"))
        for path, content in parts
    ]
