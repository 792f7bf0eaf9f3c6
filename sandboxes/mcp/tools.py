"""The server's MCP tools: the catalogue's arguments, validated by their pydantic
models, run on the service layer with the API views' authorization.

Each tool asks ``lifecycle.get_sandbox`` for the same action its API route asks, so
another user's sandbox is the same ``not_found`` here as there; results are the
API's answers, shaped for MCP by the shared layer (``sandbox_ide.mcp.layer``).
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from django.conf import settings
from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from pydantic import BaseModel, ValidationError
from sandbox_ide.mcp.layer import (
    READ_LIMIT,
    Output,
    Progress,
    ToolFailure,
    code_result,
    decode_content,
    file_result,
)
from sandbox_ide.mcp.layer import json_result as layer_json_result

from container.agent.protocol import signal_number
from sandboxes import code, files, git, lifecycle, ports, processes, snapshots
from sandboxes.api.errors import describe_validation
from sandboxes.api.git import CloneOut, StatusOut
from sandboxes.api.ports import expose_level
from sandboxes.api.sandboxes import sandbox_out
from sandboxes.api.schemas import SandboxIn
from sandboxes.api.serialize import exit_out
from sandboxes.disk import disk_usage
from sandboxes.errors import SandboxError
from sandboxes.execs import ExecRequest, Text, exec_stream, text_events
from sandboxes.models import Sandbox
from sandboxes.policy import Action
from sandboxes.templates import launch, service

from . import catalogue as c


@dataclass(frozen=True)
class Call:
    """Who calls a tool, the server origin they reached (for preview URLs), and
    where the tool's output streams."""

    user: User
    origin: ports.Origin
    progress: Progress


Handler = Callable[[Call, Any], Awaitable[types.CallToolResult]]


def json_result(data: Any) -> types.CallToolResult:
    """An answer as the API encodes it (datetimes as ISO 8601)."""
    return layer_json_result(json.loads(json.dumps(data, cls=DjangoJSONEncoder)))


def failure_of(exc: Exception) -> ToolFailure | None:
    """The API's code and sentence for an error of the service layer."""
    if isinstance(exc, SandboxError):
        return ToolFailure(exc.code, exc.message)
    return None


def parse(name: str, arguments: dict[str, Any]) -> BaseModel:
    """The tool's arguments through its model; refused like the API refuses a body."""
    if len(json.dumps(arguments)) > settings.API_MAX_JSON_BODY:
        raise ToolFailure(
            "payload_too_large",
            f"The arguments are larger than API_MAX_JSON_BODY ({settings.API_MAX_JSON_BODY} "
            "bytes): send less at once (a large file goes over the API's PUT files/content).",
        )
    try:
        return c.BY_NAME[name].arguments.model_validate(arguments)
    except ValidationError as exc:
        raise ToolFailure(
            "invalid_request", describe_validation([dict(e) for e in exc.errors()])
        ) from None


async def _sandbox(call: Call, args: c.SandboxArgs, action: Action = "use") -> Sandbox:
    return await lifecycle.get_sandbox(call.user, args.sandbox_id, action=action)


# --------------------------------------------------------------------------- sandboxes


async def create_sandbox(call: Call, args: SandboxIn) -> types.CallToolResult:
    """As POST /sandboxes: get or create by name, from a template or a snapshot of the
    caller's."""
    name = args.name or "sandbox-" + secrets.token_hex(4)
    if args.template and args.template != launch.DEFAULT_TEMPLATE:
        template = await service.get_template(call.user, args.template)
        sandbox, _ = await launch.create_sandbox_from_template_ex(
            call.user,
            template,
            name,
            env=args.env or {},
            sleep_after=args.sleep_after,
            keep_alive=bool(args.keep_alive),
            egress=args.egress or "all",
        )
    else:
        options = lifecycle.SandboxSettings(
            name=name,
            template=args.template or "",
            env=args.env or {},
            sleep_after=args.sleep_after,
            keep_alive=bool(args.keep_alive),
            egress=args.egress or "all",
        )
        if args.snapshot:
            sandbox, _ = await snapshots.create_from_snapshot(call.user, args.snapshot, options)
        else:
            sandbox, _ = await lifecycle.get_or_create_sandbox(call.user, options)
    return json_result(sandbox_out(sandbox))


async def list_sandboxes(call: Call, args: c.NoArgs) -> types.CallToolResult:
    return json_result(
        {"sandboxes": [sandbox_out(s) for s in await lifecycle.list_sandboxes(call.user)]}
    )


async def get_sandbox(call: Call, args: c.SandboxArgs) -> types.CallToolResult:
    sandbox = await lifecycle.get_sandbox(
        call.user, args.sandbox_id, with_ports=True, action="view"
    )
    out = sandbox_out(sandbox)
    out["disk"] = await disk_usage(sandbox)
    return json_result(out)


async def delete_sandbox(call: Call, args: c.SandboxArgs) -> types.CallToolResult:
    await lifecycle.destroy_sandbox(await _sandbox(call, args, "manage"))
    return json_result({"deleted": args.sandbox_id})


# --------------------------------------------------------------------------- commands


async def exec_command(call: Call, args: c.ExecArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    request = ExecRequest(
        command=args.command,
        cwd=args.cwd,
        env=args.env or {},
        timeout=args.timeout,
        stdin=args.stdin,
        session=args.session,
    )
    output = Output(call.progress)
    async for item in text_events(exec_stream(sandbox, request)):
        if isinstance(item, Text):
            await output.add(item.stream, item.text)
        elif item.exit is not None:
            return output.result(exit_out(item.exit))
    raise SandboxError("The command ended without an exit status.")


# --------------------------------------------------------------------------- files


async def read_file(call: Call, args: c.ReadFileArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args, "view")
    data, size = await read_bytes(sandbox, args.path)
    return file_result(args.path, data, size)


async def read_bytes(sandbox: Sandbox, path: str) -> tuple[bytes, int]:
    """The first READ_LIMIT bytes of a file, and its size."""
    download = await files.read(sandbox, path, 0, READ_LIMIT)
    data = b"".join([chunk async for chunk in download.chunks])
    return data, download.info.size


async def write_file(call: Call, args: c.WriteFileArgs) -> types.CallToolResult:
    content = decode_content(args.model_dump())
    sandbox = await _sandbox(call, args)
    limit = int(settings.FILES_MAX_UPLOAD)
    written = await files.write(sandbox, args.path, io.BytesIO(content).read, limit)
    return json_result({"path": written.path, "size": written.size, "created": written.created})


async def list_files(call: Call, args: c.ListFilesArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args, "view")
    listing = await files.list_dir(sandbox, args.path, args.recursive)
    data: dict[str, Any] = {"path": listing.path, "entries": listing.entries}
    if listing.truncated:
        data["truncated"] = True
    return json_result(data)


async def move_file(call: Call, args: c.MoveFileArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    done = await files.move(sandbox, args.source, args.destination, args.overwrite)
    return json_result({"path": done.path})


async def delete_file(call: Call, args: c.DeleteFileArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    await files.delete(sandbox, args.path, args.recursive)
    return json_result({"path": args.path, "deleted": True})


# --------------------------------------------------------------------------- code


async def run_code(call: Call, args: c.RunCodeArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    request = code.RunRequest(
        code=args.code, language=args.language, context=args.context, timeout=args.timeout
    )
    return code_result(
        (await code.collect(code.run_stream(sandbox, request), sandbox.owner_id)).as_dict()
    )


# --------------------------------------------------------------------------- processes


async def start_process(call: Call, args: c.StartProcessArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    started = await processes.start_process(sandbox, args.command, args.cwd, args.env or {})
    return json_result(started)


async def list_processes(call: Call, args: c.SandboxArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    return json_result({"processes": await processes.list_processes(sandbox)})


async def process_logs(call: Call, args: c.ProcessArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    logs = await processes.logs_so_far(sandbox, args.pid)
    return json_result({"stdout": logs["stdout"], "stderr": logs["stderr"]})


async def stop_process(call: Call, args: c.StopProcessArgs) -> types.CallToolResult:
    if signal_number(args.signal) is None:
        raise ToolFailure(
            "invalid_signal",
            f"Unknown signal {args.signal!r}: use a name such as TERM, KILL, INT or HUP.",
        )
    sandbox = await _sandbox(call, args)
    await processes.signal_process(sandbox, args.pid, args.signal)
    return json_result({"pid": args.pid, "signal": args.signal})


# --------------------------------------------------------------------------- ports and git


async def expose_port(call: Call, args: c.ExposePortArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    level = expose_level(args)
    row, _created = await ports.expose(sandbox, args.port, args.name, level, args.expires_in)
    await lifecycle.touch(sandbox)
    return json_result(ports.port_out(row, call.origin))


async def git_clone(call: Call, args: c.GitCloneArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args)
    options = {"url": args.url, "branch": args.branch, "depth": args.depth}
    result = await git.run(sandbox, "clone", args.path, options, args.credentials(), shape=CloneOut)
    return json_result(result)


async def git_status(call: Call, args: c.GitStatusArgs) -> types.CallToolResult:
    sandbox = await _sandbox(call, args, "view")
    return json_result(await git.run(sandbox, "status", args.path, shape=StatusOut))


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


async def run(call: Call, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    """Run tool ``name`` (one of the catalogue's) for ``call``."""
    return await HANDLERS[name](call, parse(name, arguments))
