"""The MCP tool layer both transports share: the server's ``/mcp`` (sandboxes/mcp/)
and ``sandbox-ide mcp`` (stdio, ``stdio.py``).

Each transport supplies a ``Backend`` that runs a tool on API-shaped data (the
server calls its services, the stdio server the HTTP API); everything the client
sees is decided here, once: the tool list (``tools.json``, generated from the API's
pydantic models by ``manage.py mcp_tools``), how results, output, images and errors
become MCP content, and the ``sandbox://{sandbox_id}/{path}`` file resources.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from .. import __version__

NAME = "sandbox-ide"
INSTRUCTIONS = (
    "Isolated sandboxes (Linux containers with a persistent /workspace) to run code in. "
    "create_sandbox (or list_sandboxes) gives a sandbox id that every other tool takes. "
    "Files are also resources: sandbox://{sandbox_id}/{absolute path}."
)
# Characters of each output stream a tool result keeps (its first and last half).
OUTPUT_LIMIT = 40_000
# Bytes of a file read_file and resources answer.
READ_LIMIT = 1024 * 1024
URI_PREFIX = "sandbox://"
RESOURCE_TEMPLATE = types.ResourceTemplate(
    uri_template=URI_PREFIX + "{sandbox_id}/{path}",
    name="sandbox-file",
    title="A file in a sandbox",
    description="A file of a sandbox by its absolute path: sandbox://ID/workspace/main.py.",
)
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml")

Progress = Callable[[str], Awaitable[None]]


class ToolFailure(Exception):
    """A tool's coded error, as the API would answer it (``code`` and a sentence)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@cache
def tool_list() -> list[types.Tool]:
    data = json.loads(Path(__file__).with_name("tools.json").read_text())
    return [types.Tool.model_validate(item) for item in data]


@cache
def tool_schemas() -> dict[str, dict[str, Any]]:
    return {tool.name: tool.input_schema for tool in tool_list()}


class Backend(Protocol):
    """What a transport provides: run a tool, read a file; failures as ``ToolFailure``
    (or an error ``failure`` recognises)."""

    async def call(
        self,
        ctx: ServerRequestContext[Any, Any],
        name: str,
        args: dict[str, Any],
        progress: Progress,
    ) -> types.CallToolResult: ...

    async def read(
        self, ctx: ServerRequestContext[Any, Any], sandbox_id: str, path: str
    ) -> bytes: ...

    def failure(self, exc: Exception) -> ToolFailure | None: ...


# --------------------------------------------------------------------------- results


def error_result(code: str, message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=f"{code}: {message}")],
        structured_content={"error": {"code": code, "message": message}},
        is_error=True,
    )


def json_result(data: Any) -> types.CallToolResult:
    """An API answer as is: JSON text, and structured when it is an object."""
    text = json.dumps(data, indent=1, default=str)
    structured = json.loads(text) if isinstance(data, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured
    )


class Kept:
    """One output stream within ``limit`` characters: its first half and its last
    half, and how much was left out between them."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.half = limit // 2
        self.head: list[str] = []
        self.head_size = 0
        self.tail = ""
        self.dropped = 0

    def add(self, text: str) -> None:
        room = self.half - self.head_size
        if room > 0:
            self.head.append(text[:room])
            self.head_size += len(text[:room])
            text = text[room:]
        if text:
            self.tail += text
            if len(self.tail) > self.half:
                self.dropped += len(self.tail) - self.half
                self.tail = self.tail[-self.half :]

    def text(self) -> str:
        marker = f"\n[... {self.dropped} characters of output left out ...]\n"
        return "".join(self.head) + (marker if self.dropped else "") + self.tail


class Output:
    """A command's output as it comes: streamed to ``progress``, kept within
    OUTPUT_LIMIT per stream for the result."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.streams = {"stdout": Kept(), "stderr": Kept()}

    async def add(self, stream: str, text: str) -> None:
        self.streams[stream].add(text)
        await self.progress(text)

    def result(self, exit: dict[str, Any], truncated: bool = False) -> types.CallToolResult:
        """``exit`` is the API's exit event (exit_code, success, timed_out, duration_ms)."""
        stdout, stderr = self.streams["stdout"], self.streams["stderr"]
        truncated = truncated or bool(stdout.dropped or stderr.dropped)
        data = {**exit, "stdout": stdout.text(), "stderr": stderr.text(), "truncated": truncated}
        if exit.get("timed_out"):
            status = "timed out (killed)"
        else:
            status = f"exit code {exit.get('exit_code')}"
        parts = [f"{status} after {exit.get('duration_ms', 0):.0f} ms"]
        for name in ("stdout", "stderr"):
            if data[name]:
                parts.append(f"--- {name} ---\n{data[name]}")
        return types.CallToolResult(
            content=[types.TextContent(text="\n".join(parts))], structured_content=data
        )


def code_result(run: dict[str, Any]) -> types.CallToolResult:
    """A code run (the API's RunOut): output and results as text, figures as images."""
    content: list[types.ContentBlock] = []
    for name in ("stdout", "stderr"):
        if run.get(name):
            content.append(types.TextContent(text=f"--- {name} ---\n{run[name]}"))
    for bundle in run.get("results") or []:
        image = next((kind for kind in _IMAGE_TYPES if kind in bundle), None)
        if image is not None:
            data = str(bundle[image])
            if image == "image/svg+xml":
                data = base64.b64encode(data.encode()).decode()
            content.append(types.ImageContent(data=data, mime_type=image))
        elif "text/plain" in bundle:
            content.append(types.TextContent(text=str(bundle["text/plain"])))
    error = run.get("error")
    if error:
        content.append(
            types.TextContent(text=f"{error['name']}: {error['value']}\n{error['traceback']}")
        )
    if run.get("truncated"):
        content.append(types.TextContent(text="[output was truncated]"))
    if not content:
        content.append(types.TextContent(text="(no output)"))
    summary = {k: v for k, v in run.items() if k != "results"}
    summary["images"] = sum(isinstance(c, types.ImageContent) for c in content)
    return types.CallToolResult(content=content, structured_content=summary)


def file_result(path: str, data: bytes, size: int) -> types.CallToolResult:
    """A file's bytes as text (UTF-8) or base64, with a note when cut at READ_LIMIT."""
    try:
        text, encoding = data.decode(), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(data).decode(), "base64"
    truncated = size > len(data)
    note = f"\n[... the file has {size} bytes; the first {len(data)} are shown ...]"
    return types.CallToolResult(
        content=[types.TextContent(text=text + (note if truncated else ""))],
        structured_content={
            "path": path,
            "size": size,
            "encoding": encoding,
            "truncated": truncated,
        },
    )


def decode_content(args: dict[str, Any]) -> bytes:
    """write_file's ``content`` as bytes (``encoding`` utf-8 or base64)."""
    if args.get("encoding") == "base64":
        try:
            return base64.b64decode(args["content"], validate=True)
        except ValueError:
            raise ToolFailure("invalid_request", "content: is not valid base64") from None
    return str(args["content"]).encode()


# --------------------------------------------------------------------------- resources


def parse_uri(uri: str) -> tuple[str, str]:
    """``sandbox://ID/abs/path`` as (ID, "/abs/path")."""
    sandbox_id, _, path = uri.removeprefix(URI_PREFIX).partition("/")
    if not uri.startswith(URI_PREFIX) or not sandbox_id or not path:
        raise ToolFailure(
            "invalid_uri", f"{uri!r} is not a sandbox file: use sandbox://SANDBOX_ID/PATH."
        )
    return sandbox_id, "/" + path


def resource_contents(uri: str, data: bytes) -> types.ReadResourceResult:
    try:
        item: types.TextResourceContents | types.BlobResourceContents = types.TextResourceContents(
            uri=uri, text=data.decode(), mime_type="text/plain"
        )
    except UnicodeDecodeError:
        item = types.BlobResourceContents(
            uri=uri, blob=base64.b64encode(data).decode(), mime_type="application/octet-stream"
        )
    return types.ReadResourceResult(contents=[item])


# --------------------------------------------------------------------------- the server


def build_server(backend: Backend) -> Server[Any]:
    """The MCP server of ``backend``: tools, the file resource template, coded errors."""

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name not in tool_schemas():
            names = ", ".join(tool.name for tool in tool_list())
            return error_result(
                "unknown_tool", f"No tool named {params.name!r}; there are {names}."
            )
        sent = 0.0

        async def progress(text: str) -> None:
            nonlocal sent
            sent += len(text)
            await ctx.session.report_progress(sent, None, text)

        try:
            return await backend.call(ctx, params.name, dict(params.arguments or {}), progress)
        except ToolFailure as exc:
            return error_result(exc.code, exc.message)
        except Exception as exc:
            failure = backend.failure(exc)
            if failure is None:
                raise
            return error_result(failure.code, failure.message)

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[])

    async def list_templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[RESOURCE_TEMPLATE])

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        try:
            sandbox_id, path = parse_uri(str(params.uri))
            data = await backend.read(ctx, sandbox_id, path)
        except Exception as exc:
            failure = exc if isinstance(exc, ToolFailure) else backend.failure(exc)
            if failure is None:
                raise
            detail = {"code": failure.code, "message": failure.message}
            raise MCPError(INVALID_PARAMS, f"{failure.code}: {failure.message}", detail) from None
        return resource_contents(str(params.uri), data)

    return Server(
        NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )
