"""API v1: files (docs/api.md, Files), and file watching as Server-Sent Events.

Content is raw bytes in both directions and streamed: a download is a
StreamingHttpResponse fed by the agent's DATA frames, an upload is read from the
request body in chunks (never ``request.body``), so neither is held in memory.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header
from ninja import Router, Schema
from pydantic import StringConstraints

from sandboxes import files
from sandboxes.errors import BadRequest, PayloadTooLarge
from sandboxes.lifecycle import get_sandbox
from sandboxes.models import Sandbox
from sandboxes.policy import RECHECK_SECONDS, Action, while_allowed

from . import sse
from .auth import AuthedRequest
from .errors import error_response
from .schemas import StrictIn

router = Router(tags=["files"])

PathStr = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class EntryOut(Schema):
    name: str
    path: str
    type: str
    size: int
    modified: str
    target: str | None = None


class ListingOut(Schema):
    path: str
    entries: list[EntryOut]
    truncated: bool = False


class WrittenOut(Schema):
    path: str
    size: int
    created: bool


class UploadOut(Schema):
    path: str
    files: list[WrittenOut]


class PathIn(StrictIn):
    path: PathStr


class PathOut(Schema):
    path: str
    created: bool = False


class MoveIn(StrictIn):
    source: PathStr
    destination: PathStr
    overwrite: bool = False


def _check_path(path: str) -> str:
    if "\0" in path:
        raise BadRequest("path must not contain NUL bytes.", code="invalid_path")
    if len(path) > 4096:
        raise BadRequest("path is longer than 4096 characters.", code="invalid_path")
    return path


async def _sandbox(request: AuthedRequest, sandbox_id: str) -> Sandbox:
    """Reading (GET) is open to those who may look at the sandbox; writing to its owner."""
    action: Action = "view" if request.method in ("GET", "HEAD") else "use"
    return await get_sandbox(request.auth, sandbox_id, action=action)


# --------------------------------------------------------------------- listing


@router.get("/sandboxes/{sandbox_id}/files", response={200: ListingOut})
async def list_files(
    request: AuthedRequest, sandbox_id: str, path: str = "/workspace", recursive: bool = False
) -> dict[str, Any]:
    """List a directory; `recursive=1` walks it (symlinks are listed, not followed)."""
    sandbox = await _sandbox(request, sandbox_id)
    listing = await files.list_dir(sandbox, _check_path(path), recursive)
    data: dict[str, Any] = {"path": listing.path, "entries": listing.entries}
    if listing.truncated:
        data["truncated"] = True
    return data


@router.delete("/sandboxes/{sandbox_id}/files", response={204: None})
async def delete_file(
    request: AuthedRequest, sandbox_id: str, path: str, recursive: bool = False
) -> tuple[int, None]:
    """Delete a file, a symlink or an empty directory; `recursive=1` for a tree."""
    sandbox = await _sandbox(request, sandbox_id)
    await files.delete(sandbox, _check_path(path), recursive)
    return 204, None


# --------------------------------------------------------------------- content

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    """One byte range: ``suffix`` N means the last N bytes, else ``start`` and ``end``."""

    start: int = 0
    end: int | None = None
    suffix: int | None = None

    def request(self) -> tuple[int, int | None]:
        """As the agent's (offset, length): a negative offset counts from the end."""
        if self.suffix is not None:
            return (-self.suffix, None) if self.suffix else (0, 0)
        return self.start, None if self.end is None else self.end - self.start + 1

    def satisfiable(self, size: int) -> bool:
        if self.suffix is not None:
            return self.suffix > 0 and size > 0
        return self.start < size


def parse_range(header: str) -> ByteRange | None:
    """A single byte range, or None: a malformed or multi-range header is ignored
    (the whole file is sent), as RFC 9110 allows."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or (not match[1] and not match[2]):
        return None
    first, last = match[1], match[2]
    if not first:
        return ByteRange(suffix=int(last))
    end = int(last) if last else None
    if end is not None and end < int(first):
        return None
    return ByteRange(start=int(first), end=end)


# Where the platform's table guesses wrong for source code (.ts is not MPEG video).
_TYPES = {
    ".ts": "text/x-typescript",
    ".tsx": "text/x-typescript",
    ".mts": "text/x-typescript",
    ".jsx": "text/javascript",
    ".md": "text/markdown",
    ".toml": "text/x-toml",
    ".yaml": "text/x-yaml",
    ".yml": "text/x-yaml",
    ".ipynb": "application/x-ipynb+json",
}


def content_type_of(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    guessed = _TYPES.get(extension) or mimetypes.guess_type(path, strict=False)[0]
    return guessed or "application/octet-stream"


async def _stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk


@router.get(
    "/sandboxes/{sandbox_id}/files/content",
    response={200: None, 206: None, 416: None},
    openapi_extra={
        "responses": {
            200: {
                "description": "The file's bytes; `Range: bytes=a-b` gives 206.",
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def read_file(
    request: AuthedRequest, sandbox_id: str, path: str, download: bool = False
) -> HttpResponse | StreamingHttpResponse:
    """A file's raw bytes (`Content-Type` guessed); a single `Range` is honoured."""
    sandbox = await _sandbox(request, sandbox_id)
    wanted = parse_range(request.headers.get("Range", ""))
    offset, length = wanted.request() if wanted else (0, None)
    result = await files.read(sandbox, _check_path(path), offset, length)
    info = result.info
    if wanted is not None and not wanted.satisfiable(info.size):
        await result.close()
        refused = error_response(
            416,
            "range_not_satisfiable",
            f"The range {request.headers['Range']!r} is outside the file ({info.size} bytes).",
        )
        refused["Content-Range"] = f"bytes */{info.size}"
        return refused
    content_type = content_type_of(info.path)
    response = StreamingHttpResponse(
        _stream(result.chunks), content_type=content_type, status=206 if wanted else 200
    )
    response["Content-Length"] = str(info.length)
    response["Accept-Ranges"] = "bytes"
    response["Last-Modified"] = info.modified
    if wanted:
        end = info.offset + info.length - 1
        response["Content-Range"] = f"bytes {info.offset}-{end}/{info.size}"
    # The bytes are the sandbox's, not the IDE's: never let them run as a page here.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    if download:
        response["Content-Disposition"] = content_disposition_header(
            True, os.path.basename(info.path)
        )
    return response


def _body_reader(request: AuthedRequest) -> files.Reader:
    return request.read


def _check_size(request: AuthedRequest) -> int:
    limit = int(settings.FILES_MAX_UPLOAD)
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"The body ({declared} bytes) is larger than FILES_MAX_UPLOAD ({limit} bytes).",
            code="payload_too_large",
        )
    return limit


@router.put(
    "/sandboxes/{sandbox_id}/files/content",
    response={200: WrittenOut, 201: WrittenOut},
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "The file's new content, raw.",
        }
    },
)
async def write_file(
    request: AuthedRequest, sandbox_id: str, path: str
) -> tuple[int, dict[str, Any]]:
    """Write the raw request body to a file (atomically); parents are created.
    201 when the file is new, 200 when it was replaced."""
    limit = _check_size(request)
    sandbox = await _sandbox(request, sandbox_id)
    written = await files.write(sandbox, _check_path(path), _body_reader(request), limit)
    body = {"path": written.path, "size": written.size, "created": written.created}
    return (201 if written.created else 200), body


# --------------------------------------------------------------------- the tree


@router.post("/sandboxes/{sandbox_id}/files/mkdir", response={200: PathOut, 201: PathOut})
async def make_dir(
    request: AuthedRequest, sandbox_id: str, payload: PathIn
) -> tuple[int, dict[str, Any]]:
    """Make a directory and its parents (201; 200 when it already existed)."""
    sandbox = await _sandbox(request, sandbox_id)
    done = await files.make_dir(sandbox, _check_path(payload.path))
    return (201 if done.created else 200), {"path": done.path, "created": done.created}


@router.post("/sandboxes/{sandbox_id}/files/move", response={200: PathOut})
async def move_file(request: AuthedRequest, sandbox_id: str, payload: MoveIn) -> dict[str, Any]:
    """Rename or move; an existing destination is a 409 unless `overwrite` (files)."""
    sandbox = await _sandbox(request, sandbox_id)
    done = await files.move(
        sandbox, _check_path(payload.source), _check_path(payload.destination), payload.overwrite
    )
    return {"path": done.path}


@router.post(
    "/sandboxes/{sandbox_id}/files/upload",
    response={201: UploadOut},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            }
                        },
                    }
                }
            },
            "description": "One or more files, under any field name.",
        }
    },
)
async def upload_files(
    request: AuthedRequest, sandbox_id: str, path: str = "/workspace"
) -> tuple[int, dict[str, Any]]:
    """Multipart upload of one or more files into directory `path` (created if needed)."""
    limit = _check_size(request)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise BadRequest("Send the files as multipart/form-data.", code="invalid_upload")
    try:
        uploads = [f for name in request.FILES for f in request.FILES.getlist(name)]
    except RequestDataTooBig:
        raise PayloadTooLarge() from None
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise BadRequest(f"The multipart body is not valid: {exc}", code="invalid_upload") from None
    if not uploads:
        raise BadRequest("The multipart body holds no files.", code="invalid_upload")
    sandbox = await _sandbox(request, sandbox_id)
    directory = _check_path(path).rstrip("/") or "/"
    written = []
    for upload in uploads:
        name = os.path.basename(upload.name or "")
        if name in ("", ".", ".."):
            raise BadRequest(f"Invalid file name {upload.name!r}.", code="invalid_upload")
        source = upload.file
        if source is None:
            raise BadRequest(f"The upload {name!r} has no content.", code="invalid_upload")
        result = await files.write(sandbox, os.path.join(directory, name), source.read, limit)
        written.append({"path": result.path, "size": result.size, "created": result.created})
    return 201, {"path": directory, "files": written}


@router.get(
    "/sandboxes/{sandbox_id}/files/archive",
    response={200: None},
    openapi_extra={
        "responses": {
            200: {
                "description": "The directory as a .tar.gz download.",
                "content": {"application/gzip": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def archive_dir(
    request: AuthedRequest, sandbox_id: str, path: str = "/workspace"
) -> StreamingHttpResponse:
    """The directory as a streamed `.tar.gz` download."""
    sandbox = await _sandbox(request, sandbox_id)
    result = await files.archive(sandbox, _check_path(path))
    name = os.path.basename(result.info.path.rstrip("/")) or "root"
    response = StreamingHttpResponse(_stream(result.chunks), content_type="application/gzip")
    response["Content-Disposition"] = content_disposition_header(True, f"{name}.tar.gz")
    return response


# --------------------------------------------------------------------- watching


@router.get(
    "/sandboxes/{sandbox_id}/files/watch",
    response={200: None},
    openapi_extra={
        "responses": {
            200: {
                "description": "Server-Sent Events: `ready` once the watch is set, then "
                '`change` events `{"type": "create"|"modify"|"delete"|"move", "path", '
                '"is_dir", "from"?}`.',
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def watch_files(
    request: AuthedRequest,
    sandbox_id: str,
    path: str = "/workspace",
    recursive: bool = False,
    exclude: str | None = None,
) -> StreamingHttpResponse:
    """Stream changes below a directory (inotify in the sandbox) as Server-Sent Events.
    `.git` and `node_modules` are not watched unless `exclude` (comma-separated
    names, may be empty) says otherwise."""
    sandbox = await _sandbox(request, sandbox_id)
    names = None if exclude is None else [n.strip() for n in exclude.split(",") if n.strip()]
    viewer = sandbox.owner_id != request.auth.pk
    # A viewer's keep-alives come as often as the view is rechecked.
    keepalive = RECHECK_SECONDS if viewer else 15.0
    started = await files.watch(sandbox, _check_path(path), recursive, names, keepalive)
    stream = _watch_events(started)
    if viewer:
        stream = while_allowed(stream, request.auth, "view", sandbox)
    return sse.response(stream)


async def _watch_events(started: files.Watch) -> AsyncGenerator[bytes, None]:
    yield sse.event("ready", {"path": started.path})
    async for batch in started.events:
        if not batch:
            yield b": keep-alive\n\n"
        for change in batch:
            yield sse.event("change", change)


__all__ = ["parse_range", "router"]
