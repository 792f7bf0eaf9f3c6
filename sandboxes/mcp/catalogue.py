"""The MCP tools: names, descriptions and input schemas, written once.

Each tool's arguments are a pydantic model built from the HTTP API's own request
models (``sandboxes/api``): a body model with ``sandbox_id`` added, or, where the
API takes query parameters, the same field types. The server validates with these
models; the SDK's stdio server (``sandbox-ide mcp``) cannot import them, so it ships
their JSON Schemas as ``sandbox_ide/mcp/tools.json``, generated from here by
``manage.py mcp_tools`` (``--check`` fails on drift; tests/unit/test_mcp_catalogue.py
runs it), so both transports list the same tools with the same schemas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from sandboxes.api.code import RunIn
from sandboxes.api.files import MoveIn, PathStr
from sandboxes.api.git import CloneIn
from sandboxes.api.ports import ExposeIn
from sandboxes.api.processes import ProcessIn
from sandboxes.api.schemas import ExecIn, SandboxIn, StrictIn

SandboxId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Pid = Annotated[int, Field(ge=1)]
Signal = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,16}$")]


class NoArgs(StrictIn):
    pass


class SandboxArgs(StrictIn):
    sandbox_id: SandboxId


class ExecArgs(ExecIn, SandboxArgs):
    pass


class ReadFileArgs(SandboxArgs):
    path: PathStr


class WriteFileArgs(SandboxArgs):
    path: PathStr
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"


class ListFilesArgs(SandboxArgs):
    path: PathStr = "/workspace"
    recursive: bool = False


class MoveFileArgs(MoveIn, SandboxArgs):
    pass


class DeleteFileArgs(SandboxArgs):
    path: PathStr
    recursive: bool = False


class RunCodeArgs(RunIn, SandboxArgs):
    pass


class StartProcessArgs(ProcessIn, SandboxArgs):
    pass


class ProcessArgs(SandboxArgs):
    pid: Pid


class StopProcessArgs(ProcessArgs):
    signal: Signal = "TERM"


class ExposePortArgs(ExposeIn, SandboxArgs):
    pass


class GitCloneArgs(CloneIn, SandboxArgs):
    pass


class GitStatusArgs(SandboxArgs):
    path: PathStr | None = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    arguments: type[BaseModel]

    def schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema()


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "create_sandbox",
        "Get or create one of your sandboxes by name (a new one is started); answers the "
        "sandbox, whose `id` the other tools take. Without a name a new one is made; "
        "with `snapshot` (an id) it starts with that snapshot's files.",
        SandboxIn,
    ),
    ToolSpec("list_sandboxes", "Your sandboxes, with their ids and status.", NoArgs),
    ToolSpec("get_sandbox", "One sandbox: status, exposed ports, disk use.", SandboxArgs),
    ToolSpec(
        "delete_sandbox",
        "Destroy a sandbox for good: its container and its /workspace are removed.",
        SandboxArgs,
    ),
    ToolSpec(
        "exec",
        "Run a command in a sandbox and wait for it: a string runs under `bash -lc`, a "
        "list as argv. `timeout` (seconds) kills it, `cwd` and `env` set where and with "
        "what. Output streams as progress notifications; the result keeps the beginning "
        "and end of each stream and marks what was left out.",
        ExecArgs,
    ),
    ToolSpec(
        "read_file",
        "Read a file of the sandbox (text; a binary file comes back base64-encoded).",
        ReadFileArgs,
    ),
    ToolSpec(
        "write_file",
        "Write a file (parents are created, an existing file is replaced). `content` is "
        "text, or base64 with `encoding: base64`.",
        WriteFileArgs,
    ),
    ToolSpec(
        "list_files",
        "List a directory (default /workspace); `recursive` walks it.",
        ListFilesArgs,
    ),
    ToolSpec(
        "move_file",
        "Rename or move a file or directory; an existing destination is an error unless "
        "`overwrite`.",
        MoveFileArgs,
    ),
    ToolSpec(
        "delete_file",
        "Delete a file, a symlink or an empty directory; `recursive` for a whole tree.",
        DeleteFileArgs,
    ),
    ToolSpec(
        "run_code",
        "Run Python or JavaScript in a persistent context (variables survive between "
        "runs; `context` names one, else the language's default). Answers its output, "
        "its results as text, and figures (matplotlib ...) as images.",
        RunCodeArgs,
    ),
    ToolSpec(
        "start_process",
        "Start a background process (a server, a watcher ...); answers its pid at once.",
        StartProcessArgs,
    ),
    ToolSpec("list_processes", "The sandbox's background processes.", SandboxArgs),
    ToolSpec(
        "process_logs",
        "What a background process has written so far (the tail of stdout and stderr).",
        ProcessArgs,
    ),
    ToolSpec(
        "stop_process",
        "Send a signal (TERM by default; KILL, INT, HUP ...) to a background process.",
        StopProcessArgs,
    ),
    ToolSpec(
        "expose_port",
        "Expose a port the sandbox listens on at a preview URL; answers the URL.",
        ExposePortArgs,
    ),
    ToolSpec(
        "git_clone",
        "Clone a repository into the sandbox (default /workspace/<repository name>); "
        "`username` + `password` or `token` for a private one, used for this call only.",
        GitCloneArgs,
    ),
    ToolSpec(
        "git_status",
        "Branch, commit, ahead/behind and changed files of a repository (default /workspace).",
        GitStatusArgs,
    ),
)

BY_NAME = {tool.name: tool for tool in TOOLS}

# What the SDK ships (sdk/python/sandbox_ide/mcp/tools.json).
SDK_COPY = Path(__file__).resolve().parents[2] / "sdk/python/sandbox_ide/mcp/tools.json"


def as_json() -> str:
    tools = [
        {"name": t.name, "description": t.description, "inputSchema": t.schema()} for t in TOOLS
    ]
    return json.dumps(tools, indent=1, sort_keys=True) + "\n"
