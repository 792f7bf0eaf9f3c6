"""``sandbox-ide mcp``: the MCP server on stdin/stdout, for clients that start their
tools as programs. Each tool is one call of the HTTP API through the SDK's client
(``AsyncHTTP``), so the server decides everything as it does for ``/mcp``; the tools,
their schemas and their results are the shared layer's (``layer.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

from .. import _api
from .._async.http import AsyncHTTP
from .._wire import NO_READ_TIMEOUT
from ..errors import SandboxIDEError
from .layer import (
    READ_LIMIT,
    Output,
    Progress,
    ToolFailure,
    build_server,
    code_result,
    decode_content,
    file_result,
    json_result,
    tool_schemas,
)

Handler = Callable[["HttpBackend", dict[str, Any], Progress], Awaitable[types.CallToolResult]]


def check_arguments(name: str, args: dict[str, Any]) -> None:
    """The arguments against the tool's schema, worded as the API words its 400s (the
    server checks them again)."""
    schema = tool_schemas()[name]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))
    parts: list[str] = []
    for error in errors:
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and not where:
            missing = [f for f in schema.get("required", []) if f not in args]
            parts += [f"{field}: is required" for field in missing]
        elif error.validator == "additionalProperties" and not where:
            known = schema.get("properties", {})
            parts += [f"{field}: is not a known field" for field in args if field not in known]
        else:
            parts.append(f"{where or 'arguments'}: {error.message[:200]}")
    if parts:
        raise ToolFailure("invalid_request", "; ".join(dict.fromkeys(parts[:5])))


class HttpBackend:
    """``layer.Backend`` on the HTTP API of the server at ``http.url``."""

    def __init__(self, http: AsyncHTTP) -> None:
        self.http = http

    async def call(
        self,
        ctx: ServerRequestContext[Any, Any],
        name: str,
        args: dict[str, Any],
        progress: Progress,
    ) -> types.CallToolResult:
        check_arguments(name, args)
        return await HANDLERS[name](self, args, progress)

    async def read(self, ctx: ServerRequestContext[Any, Any], sandbox_id: str, path: str) -> bytes:
        data, _size = await self.read_bytes(sandbox_id, path)
        return data

    def failure(self, exc: Exception) -> ToolFailure | None:
        if isinstance(exc, SandboxIDEError):
            return ToolFailure(exc.code, exc.message)
        return None

    async def read_bytes(self, sandbox_id: str, path: str) -> tuple[bytes, int]:
        """The first READ_LIMIT bytes of a file, and its size."""
        url = sandbox(sandbox_id, "files", "content")
        async with self.http.stream("GET", url, params={"path": path}) as response:
            size = int(response.headers.get("content-length", 0))
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk[: READ_LIMIT - len(data)]
                if len(data) >= READ_LIMIT:
                    break
        return bytes(data), max(size, len(data))


def sandbox(sandbox_id: str, *parts: str | int) -> str:
    return _api.path("sandboxes", sandbox_id, *parts)


def body(args: dict[str, Any]) -> dict[str, Any]:
    """A tool's arguments as the API's request body (the sandbox is in the URL)."""
    return {k: v for k, v in args.items() if k != "sandbox_id"}


# --------------------------------------------------------------------------- the tools


async def create_sandbox(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    data = await b.http.json("POST", "/sandboxes", json=args, timeout=NO_READ_TIMEOUT)
    return json_result(data)


async def list_sandboxes(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    return json_result(await b.http.json("GET", "/sandboxes"))


async def get_sandbox(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    return json_result(await b.http.json("GET", sandbox(args["sandbox_id"])))


async def delete_sandbox(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    await b.http.request("DELETE", sandbox(args["sandbox_id"]), timeout=NO_READ_TIMEOUT)
    return json_result({"deleted": args["sandbox_id"]})


async def exec_command(
    b: HttpBackend, args: dict[str, Any], progress: Progress
) -> types.CallToolResult:
    output = Output(progress)
    url = sandbox(args["sandbox_id"], "exec")
    async for event, data in b.http.events("POST", url, json=body(args)):
        if event in ("stdout", "stderr"):
            await output.add(event, data["data"])
        elif event == "exit":
            return output.result(data)
    raise ToolFailure("agent_error", "The command's output ended without an exit status.")


async def read_file(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    data, size = await b.read_bytes(args["sandbox_id"], args["path"])
    return file_result(args["path"], data, size)


async def write_file(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    content = decode_content(args)
    url = sandbox(args["sandbox_id"], "files", "content")
    data = await b.http.json("PUT", url, params={"path": args["path"]}, content=content)
    return json_result(data)


async def list_files(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    params = {"path": args.get("path", "/workspace"), "recursive": bool(args.get("recursive"))}
    return json_result(
        await b.http.json("GET", sandbox(args["sandbox_id"], "files"), params=params)
    )


async def move_file(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    url = sandbox(args["sandbox_id"], "files", "move")
    return json_result(await b.http.json("POST", url, json=body(args)))


async def delete_file(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    params = {"path": args["path"], "recursive": bool(args.get("recursive"))}
    await b.http.request("DELETE", sandbox(args["sandbox_id"], "files"), params=params)
    return json_result({"path": args["path"], "deleted": True})


async def run_code(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    url = sandbox(args["sandbox_id"], "code", "run")
    data = await b.http.json("POST", url, json=body(args), timeout=NO_READ_TIMEOUT)
    return code_result(data)


async def start_process(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    url = sandbox(args["sandbox_id"], "processes")
    return json_result(await b.http.json("POST", url, json=body(args)))


async def list_processes(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    return json_result(await b.http.json("GET", sandbox(args["sandbox_id"], "processes")))


async def process_logs(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    url = sandbox(args["sandbox_id"], "processes", args["pid"], "logs")
    return json_result(await b.http.json("GET", url))


async def stop_process(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    signal = args.get("signal", "TERM")
    url = sandbox(args["sandbox_id"], "processes", args["pid"])
    await b.http.request("DELETE", url, params={"signal": signal})
    return json_result({"pid": args["pid"], "signal": signal})


async def expose_port(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    url = sandbox(args["sandbox_id"], "ports")
    return json_result(await b.http.json("POST", url, json=body(args)))


async def git_clone(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    url = sandbox(args["sandbox_id"], "git", "clone")
    return json_result(await b.http.json("POST", url, json=body(args), timeout=NO_READ_TIMEOUT))


async def git_status(b: HttpBackend, args: dict[str, Any], _: Progress) -> types.CallToolResult:
    params = _api.drop_none(path=args.get("path"))
    url = sandbox(args["sandbox_id"], "git", "status")
    return json_result(await b.http.json("GET", url, params=params))


HANDLERS: dict[str, Handler] = {
    "create_sandbox": create_sandbox,
    "list_sandboxes": list_sandboxes,
    "get_sandbox": get_sandbox,
    "delete_sandbox": delete_sandbox,
    "exec": exec_command,
    "read_file": read_file,
    "write_file": write_file,
    "list_files": list_files,
    "move_file": move_file,
    "delete_file": delete_file,
    "run_code": run_code,
    "start_process": start_process,
    "list_processes": list_processes,
    "process_logs": process_logs,
    "stop_process": stop_process,
    "expose_port": expose_port,
    "git_clone": git_clone,
    "git_status": git_status,
}


async def serve(url: str | None = None, token: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the client closes them."""
    http = AsyncHTTP(url, token)
    server = build_server(HttpBackend(http))
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await http.aclose()


def main(url: str | None = None, token: str | None = None) -> None:
    anyio.run(serve, url, token)
