"""The MCP server (docs/mcp.md) driven by the mcp package's own client, over both
transports: the server's /mcp (streamable HTTP) and `sandbox-ide mcp` (stdio)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.integration.preview_apps import HTTP_APP
from tests.integration.test_preview import HTTP_PORT, preview, start_app
from tests.server import LiveServer

CLI = str(Path(sys.executable).parent / "sandbox-ide")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRANSPORTS = ["http", "stdio"]


@asynccontextmanager
async def connect(
    server: LiveServer, transport: str, user: str = "mcp-user"
) -> AsyncIterator[Client]:
    """An MCP client of ``user`` on ``transport``."""
    token = server.token(user)
    if transport == "http":
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)
        )
        target: Any = streamable_http_client(server.url + "/mcp", http_client=http)
    else:
        env = {"SANDBOX_IDE_URL": server.url, "SANDBOX_IDE_TOKEN": token}
        target = StdioServerParameters(command=CLI, args=["mcp"], env=env)
    async with Client(target) as client:
        yield client


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """A tool call that must succeed: its structured result."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


async def error_of(client: Client, tool: str, args: dict[str, Any]) -> tuple[str, str]:
    """A tool call that must fail: its (code, message)."""
    result = await client.call_tool(tool, args)
    assert result.is_error, text(result)
    assert result.structured_content is not None
    error = result.structured_content["error"]
    assert text(result) == f"{error['code']}: {error['message']}"
    return error["code"], error["message"]


@pytest.fixture(scope="module")
def box(server: LiveServer) -> dict[str, Any]:
    """The MCP user's sandbox, made through the API."""
    with server.client("mcp-user") as api:
        response = api.post("/sandboxes", json={"name": "mcpbox", "keep_alive": True})
        assert response.status_code in (200, 201), response.text
        return dict(response.json())


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_and_resource_template_are_listed(server: LiveServer, transport: str) -> None:
    async with connect(server, transport) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = (await client.list_resource_templates()).resource_templates
    expected = {
        "create_sandbox", "list_sandboxes", "get_sandbox", "delete_sandbox", "exec",
        "read_file", "write_file", "list_files", "move_file", "delete_file", "run_code",
        "start_process", "list_processes", "process_logs", "stop_process", "expose_port",
        "git_clone", "git_status",
    }  # fmt: skip
    assert set(tools) == expected
    # the API's own field names and constraints
    exec_schema = tools["exec"].input_schema
    assert set(exec_schema["required"]) == {"command", "sandbox_id"}
    assert {"cwd", "env", "timeout", "stdin"} <= set(exec_schema["properties"])
    assert exec_schema["additionalProperties"] is False
    assert [t.uri_template for t in templates] == ["sandbox://{sandbox_id}/{path}"]


async def test_both_transports_list_the_same_tools(server: LiveServer) -> None:
    listings = []
    for transport in TRANSPORTS:
        async with connect(server, transport) as client:
            tools = (await client.list_tools()).tools
        listings.append([t.model_dump() for t in tools])
    assert listings[0] == listings[1]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sandbox_lifecycle(server: LiveServer, transport: str) -> None:
    name = f"mcp-life-{transport}"
    async with connect(server, transport) as client:
        made = await call(client, "create_sandbox", name=name)
        assert made["name"] == name and made["status"] == "running"
        listed = await call(client, "list_sandboxes")
        assert name in [s["name"] for s in listed["sandboxes"]]
        got = await call(client, "get_sandbox", sandbox_id=made["id"])
        assert got["id"] == made["id"]
        await call(client, "delete_sandbox", sandbox_id=made["id"])
        assert (await error_of(client, "get_sandbox", {"sandbox_id": made["id"]}))[0] == "not_found"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_exec_streams_progress_and_truncates(
    server: LiveServer, box: dict[str, Any], transport: str
) -> None:
    sid = box["id"]
    async with connect(server, transport) as client:
        out = await call(
            client,
            "exec",
            sandbox_id=sid,
            command="echo $GREETING from $(pwd); echo oops >&2; exit 3",
            cwd="/tmp",
            env={"GREETING": "hello"},
        )
        assert out["stdout"] == "hello from /tmp\n" and out["stderr"] == "oops\n"
        assert out["exit_code"] == 3 and out["success"] is False

        timed = await call(client, "exec", sandbox_id=sid, command=["sleep", "30"], timeout=1)
        assert timed["timed_out"] is True

        progress: list[str] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")

        # 200,000 characters: streamed whole, kept in part
        result = await client.call_tool(
            "exec",
            {"sandbox_id": sid, "command": "python3 -c \"print('x' * 199999)\""},
            progress_callback=on_progress,
        )
    assert not result.is_error
    assert "".join(progress) == "x" * 199999 + "\n"
    data = result.structured_content
    assert data is not None and data["truncated"] is True
    assert "characters of output left out" in data["stdout"]
    assert data["stdout"].startswith("x" * 1000) and data["stdout"].endswith("x\n")
    assert len(data["stdout"]) < 50_000


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_files_and_resources(server: LiveServer, box: dict[str, Any], transport: str) -> None:
    sid = box["id"]
    folder = f"/workspace/mcp-{transport}"
    async with connect(server, transport) as client:
        written = await call(
            client, "write_file", sandbox_id=sid, path=f"{folder}/a.txt", content="héllo\n"
        )
        assert written["created"] is True
        read = await client.call_tool("read_file", {"sandbox_id": sid, "path": f"{folder}/a.txt"})
        assert text(read) == "héllo\n"
        raw = base64.b64encode(b"\x00\xffbin").decode()
        await call(
            client, "write_file", sandbox_id=sid, path=f"{folder}/b.bin", content=raw,
            encoding="base64",
        )  # fmt: skip
        binary = await call(client, "read_file", sandbox_id=sid, path=f"{folder}/b.bin")
        assert binary["encoding"] == "base64"

        await call(
            client, "move_file", sandbox_id=sid, source=f"{folder}/a.txt",
            destination=f"{folder}/c.txt",
        )  # fmt: skip
        listing = await call(client, "list_files", sandbox_id=sid, path=folder)
        assert sorted(e["name"] for e in listing["entries"]) == ["b.bin", "c.txt"]

        resource = await client.read_resource(f"sandbox://{sid}{folder}/c.txt")
        (contents,) = resource.contents
        assert isinstance(contents, types.TextResourceContents) and contents.text == "héllo\n"

        await call(client, "delete_file", sandbox_id=sid, path=folder, recursive=True)
        code, message = await error_of(
            client, "read_file", {"sandbox_id": sid, "path": f"{folder}/c.txt"}
        )
        assert code == "not_found", message
        with pytest.raises(MCPError, match="not_found"):
            await client.read_resource(f"sandbox://{sid}{folder}/c.txt")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_run_code_returns_figures_as_images(
    server: LiveServer, box: dict[str, Any], transport: str
) -> None:
    async with connect(server, transport) as client:
        result = await client.call_tool(
            "run_code",
            {
                "sandbox_id": box["id"],
                "code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nprint('drawn')",
            },
        )
        assert not result.is_error, text(result)
        images = [c for c in result.content if isinstance(c, types.ImageContent)]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
        assert "drawn" in text(result)

        js = await client.call_tool(
            "run_code", {"sandbox_id": box["id"], "code": "[1, 2].map(x => x * 21)[1]",
                         "language": "javascript"},
        )  # fmt: skip
        assert "42" in text(js)
        failed = await client.call_tool("run_code", {"sandbox_id": box["id"], "code": "1 / 0"})
        assert "ZeroDivisionError" in text(failed)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_processes_ports_and_preview(
    server: LiveServer, box: dict[str, Any], transport: str
) -> None:
    sid = box["id"]
    with server.client("mcp-user") as api:
        start_app(api, box, HTTP_APP, "preview_http", HTTP_PORT)
    async with connect(server, transport) as client:
        started = await call(
            client, "start_process", sandbox_id=sid, command="echo started; sleep 300"
        )
        pid = started["pid"]
        listed = await call(client, "list_processes", sandbox_id=sid)
        assert pid in [p["pid"] for p in listed["processes"]]
        logs: dict[str, Any] = {}
        for _ in range(50):
            logs = await call(client, "process_logs", sandbox_id=sid, pid=pid)
            if logs["stdout"]:
                break
        assert logs["stdout"] == "started\n"
        await call(client, "stop_process", sandbox_id=sid, pid=pid)

        exposed = await call(client, "expose_port", sandbox_id=sid, port=HTTP_PORT)
    assert exposed["url"].startswith(f"http://{HTTP_PORT}-{sid}-")
    assert exposed["url"].endswith(f".preview.localhost:{server.port}/")
    with preview(server, exposed["url"]) as web:
        response = web.get("/hello")
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/hello"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_git_clone_and_status(
    server: LiveServer, box: dict[str, Any], transport: str
) -> None:
    sid = box["id"]
    repo = f"/workspace/origin-{transport}"
    async with connect(server, transport) as client:
        await call(
            client, "exec", sandbox_id=sid,
            command=f"rm -rf {repo} /workspace/clone-{transport} && git init -q {repo} && "
            f"cd {repo} && echo hi > f && git add f && git -c user.name=a -c user.email=a@b "
            "commit -qm one",
        )  # fmt: skip
        cloned = await call(
            client, "git_clone", sandbox_id=sid, url=f"file://{repo}",
            path=f"/workspace/clone-{transport}",
        )  # fmt: skip
        assert cloned["commit"]
        await call(
            client, "write_file", sandbox_id=sid, path=f"/workspace/clone-{transport}/new.txt",
            content="x",
        )  # fmt: skip
        status = await call(
            client, "git_status", sandbox_id=sid, path=f"/workspace/clone-{transport}"
        )
    assert status["clean"] is False
    assert [f["path"] for f in status["files"]] == ["new.txt"]


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_input_is_a_clear_tool_error(
    server: LiveServer, box: dict[str, Any], transport: str
) -> None:
    sid = box["id"]
    async with connect(server, transport) as client:
        code, message = await error_of(client, "no_such_tool", {})
        assert code == "unknown_tool" and "exec" in message

        code, message = await error_of(client, "exec", {"sandbox_id": sid, "command": 5})
        assert code == "invalid_request" and "command" in message
        code, message = await error_of(client, "exec", {"sandbox_id": sid})
        assert code == "invalid_request" and "command" in message
        code, message = await error_of(
            client, "exec", {"sandbox_id": sid, "command": "true", "timeout": "soon"}
        )
        assert code == "invalid_request" and "timeout" in message
        code, message = await error_of(
            client, "exec", {"sandbox_id": sid, "command": "true", "bogus": 1}
        )
        assert code == "invalid_request" and "bogus" in message

        # an API error: its code and sentence
        code, message = await error_of(client, "read_file", {"sandbox_id": sid, "path": "/nope"})
        assert code == "not_found" and "/nope" in message

        # larger than the API takes (API_MAX_JSON_BODY, 4 MiB by default)
        huge = "x" * (5 * 1024 * 1024)
        code, message = await error_of(client, "exec", {"sandbox_id": sid, "command": huge})
        assert code == "payload_too_large" and "API_MAX_JSON_BODY" in message

        # ... and the server goes on
        out = await call(client, "exec", sandbox_id=sid, command="echo still here")
        assert out["stdout"] == "still here\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_another_users_sandbox_is_not_found(
    server: LiveServer, box: dict[str, Any], transport: str
) -> None:
    """Exactly what the API answers for it."""
    with server.client("mcp-intruder") as api:
        answer = api.get(f"/sandboxes/{box['id']}").json()["error"]
    async with connect(server, transport, user="mcp-intruder") as client:
        for tool, args in [
            ("get_sandbox", {}),
            ("exec", {"command": "id"}),
            ("read_file", {"path": "/workspace"}),
            ("write_file", {"path": "/workspace/x", "content": "x"}),
            ("run_code", {"code": "1"}),
            ("expose_port", {"port": 8080}),
            ("delete_sandbox", {}),
        ]:
            code, message = await error_of(client, tool, {"sandbox_id": box["id"], **args})
            assert (code, message) == (answer["code"], answer["message"]), tool
        with pytest.raises(MCPError, match="not_found"):
            await client.read_resource(f"sandbox://{box['id']}/etc/hostname")
    with server.client("mcp-user") as api:
        assert api.get(f"/sandboxes/{box['id']}").json()["status"] == "running"


def test_stdio_without_a_token_says_what_to_set(server: LiveServer) -> None:
    env = {"SANDBOX_IDE_URL": server.url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([CLI, "mcp"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert "SANDBOX_IDE_TOKEN" in out.stderr


def test_http_without_a_token_is_a_json_error(server: LiveServer) -> None:
    response = httpx.post(server.url + "/mcp", json={})
    assert response.status_code == 401
    assert json.loads(response.text)["error"]["code"] == "token_required"
