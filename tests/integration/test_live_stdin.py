"""Live stdin (docs/api.md, Background processes and Commands): input written to a
running process or command, in pieces, then closed; and every way to get it wrong."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from sandbox_ide import AsyncSandbox, ConflictError, Sandbox
from websockets.sync.client import ClientConnection, connect

from tests.server import LiveServer

SUM = ["python3", "-c", "import sys; print(sum(int(line) for line in sys.stdin))"]


def base(sandbox: dict) -> str:
    return f"/sandboxes/{sandbox['id']}/processes"


def start(api: httpx.Client, sandbox: dict, **body: object) -> dict:
    response = api.post(base(sandbox), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def logs_when_exited(api: httpx.Client, sandbox: dict, pid: int) -> str:
    """Follow the logs to the exit (the process must end by itself, at end-of-input);
    its stdout."""
    stdout, name, ended = "", "", False
    with api.stream("GET", f"{base(sandbox)}/{pid}/logs?follow=1", timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                ended = ended or name == "exit"
                if name == "stdout":
                    stdout += json.loads(line[6:])["data"]
    assert ended
    return stdout


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"].endswith((".", "!", ")")) and len(error["message"]) > 20
    return error


def test_process_stdin_in_three_writes_then_closed(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(api, shared_sandbox, command=SUM, stdin=True)
    assert process["stdin"] == "open"
    url = f"{base(shared_sandbox)}/{process['pid']}/stdin"
    for piece in (b"1\n2", b"0\n30\n", b"4000\n"):  # a line split across two writes
        response = api.post(url, content=piece)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "running"
    closed = api.post(f"{url}/close")
    assert closed.status_code == 200 and closed.json()["stdin"] == "closed"
    assert logs_when_exited(api, shared_sandbox, process["pid"]) == "4051\n"


def test_process_stdin_refusals(api: httpx.Client, shared_sandbox: dict) -> None:
    error = error_of(api.post(f"{base(shared_sandbox)}/999999/stdin", content=b"1\n"), 404)
    assert error["code"] == "not_found"
    assert error_of(api.post(f"{base(shared_sandbox)}/999999/stdin/close"), 404)

    without = start(api, shared_sandbox, command=["sleep", "600"])
    assert without["stdin"] is None
    error = error_of(api.post(f"{base(shared_sandbox)}/{without['pid']}/stdin", content=b"x"), 409)
    assert error["code"] == "stdin_not_open" and '"stdin": true' in error["message"]
    error = error_of(api.post(f"{base(shared_sandbox)}/{without['pid']}/stdin/close"), 409)
    assert error["code"] == "stdin_not_open"
    api.delete(f"{base(shared_sandbox)}/{without['pid']}?signal=KILL")

    cat = start(api, shared_sandbox, command=["cat"], stdin=True)
    url = f"{base(shared_sandbox)}/{cat['pid']}/stdin"
    assert api.post(url, content=b"before\n").status_code == 200
    assert api.post(f"{url}/close").status_code == 200
    error = error_of(api.post(url, content=b"after\n"), 409)
    assert error["code"] == "stdin_closed"
    assert error_of(api.post(f"{url}/close"), 409)["code"] == "stdin_closed"
    assert logs_when_exited(api, shared_sandbox, cat["pid"]) == "before\n"
    # the process has ended: its stdin takes nothing more
    error = error_of(api.post(f"{base(shared_sandbox)}/{cat['pid']}/stdin", content=b"x"), 409)
    assert error["code"] in ("stdin_closed", "process_exited")

    ended = start(api, shared_sandbox, command=["true"], stdin=True)
    logs_when_exited(api, shared_sandbox, ended["pid"])
    error = error_of(api.post(f"{base(shared_sandbox)}/{ended['pid']}/stdin", content=b"x"), 409)
    assert error["code"] == "process_exited"

    # a process that closes its own stdin takes no more input
    shut = start(api, shared_sandbox, command="exec 0<&-; sleep 600", stdin=True)
    url = f"{base(shared_sandbox)}/{shut['pid']}/stdin"
    deadline = time.monotonic() + 30
    while (response := api.post(url, content=b"x")).status_code == 200:
        assert time.monotonic() < deadline, "the closed pipe was never noticed"
        time.sleep(0.2)
    assert error_of(response, 409)["code"] == "stdin_closed"
    api.delete(f"{base(shared_sandbox)}/{shut['pid']}?signal=KILL")

    bad = api.post(base(shared_sandbox), json={"command": ["cat"], "stdin": "yes"})
    assert bad.status_code == 400


def test_a_body_over_the_limit_is_refused(api: httpx.Client, shared_sandbox: dict) -> None:
    cat = start(api, shared_sandbox, command=["cat"], stdin=True)
    url = f"{base(shared_sandbox)}/{cat['pid']}/stdin"
    huge = b"x" * (4 * 1024 * 1024 + 1)  # API_MAX_JSON_BODY (4 MiB) and a byte
    error = error_of(api.post(url, content=huge), 413)
    assert error["code"] == "payload_too_large" and "API_MAX_JSON_BODY" in error["message"]
    api.delete(f"{base(shared_sandbox)}/{cat['pid']}?signal=KILL")


# ------------------------------------------------------------------ exec WebSocket


def exec_ws(server: LiveServer, sandbox: dict) -> ClientConnection:
    url = server.url.replace("http://", "ws://", 1)
    return connect(
        f"{url}/ws/sandboxes/{sandbox['id']}/exec?token={server.token('alice')}",
        open_timeout=60,
    )


def until_exit(ws: ClientConnection) -> list[dict]:
    events = []
    while not events or events[-1]["type"] != "exit":
        events.append(json.loads(ws.recv(timeout=60)))
    return events


def test_exec_websocket_stdin_in_three_writes(server: LiveServer, shared_sandbox: dict) -> None:
    with exec_ws(server, shared_sandbox) as ws:
        ws.send(json.dumps({"command": SUM, "stdin": True}))
        ws.send(json.dumps({"type": "stdin", "data": "5\n6"}))
        ws.send(b"0\n")  # binary messages are input as they are
        ws.send(json.dumps({"type": "stdin", "data": "700\n"}))
        ws.send(json.dumps({"type": "stdin_close"}))
        events = until_exit(ws)
    assert {"type": "stdout", "data": "765\n"} in events
    assert events[-1]["exit_code"] == 0


def test_exec_websocket_stdin_refusals(server: LiveServer, shared_sandbox: dict) -> None:
    with exec_ws(server, shared_sandbox) as ws:  # no "stdin": true
        ws.send(json.dumps({"command": "sleep 0.5; echo done"}))
        ws.send(json.dumps({"type": "stdin", "data": "1\n"}))
        events = until_exit(ws)
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[0]["code"] == "stdin_not_open"
    assert {"type": "stdout", "data": "done\n"} in events  # the command went on

    with exec_ws(server, shared_sandbox) as ws:
        # Still running after its input ended, so the late messages are answered.
        ws.send(json.dumps({"command": ["sh", "-c", "cat; sleep 2"], "stdin": True}))
        ws.send(json.dumps({"type": "stdin", "data": "kept\n"}))
        ws.send(json.dumps({"type": "stdin_close"}))
        ws.send(json.dumps({"type": "stdin", "data": "late\n"}))
        ws.send(json.dumps({"type": "nonsense"}))
        events = until_exit(ws)
    codes = [e["code"] for e in events if e["type"] == "error"]
    assert codes == ["stdin_closed", "bad_request"]
    output = "".join(e["data"] for e in events if e["type"] == "stdout")
    assert output == "kept\n"


# ------------------------------------------------------------------------ the SDK


def test_sdk_process_send_and_close_stdin(server: LiveServer) -> None:
    conn = {"url": server.url, "token": server.token("alice")}
    with Sandbox.get_or_create("shared", **conn) as sb:
        adder = sb.processes.start(SUM, stdin=True)
        adder.send_stdin("1\n2")
        adder.send_stdin(b"0\n300\n")
        adder.send_stdin("1000\n")
        adder.close_stdin()
        assert sb.processes.wait(adder.pid, timeout=30).exit_code == 0
        assert sb.processes.logs(adder.pid).stdout == "1321\n"
        with pytest.raises(ConflictError) as closed:
            adder.send_stdin("1\n")
        assert closed.value.code in ("stdin_closed", "process_exited")
        plain = sb.processes.start(["sleep", "600"])
        with pytest.raises(ConflictError) as refused:
            plain.send_stdin("1\n")
        assert refused.value.code == "stdin_not_open"
        sb.processes.kill(plain.pid, "KILL")

    async def run_async() -> str:
        async with await AsyncSandbox.get_or_create("shared", **conn) as asb:
            adder = await asb.processes.start(SUM, stdin=True)
            for piece in ("4\n", "5\n", "6\n"):
                await adder.send_stdin(piece)
            await adder.close_stdin()
            await asb.processes.wait(adder.pid, timeout=30)
            return (await asb.processes.logs(adder.pid)).stdout

    assert asyncio.run(run_async()) == "15\n"
