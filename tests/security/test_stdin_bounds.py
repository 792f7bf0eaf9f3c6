"""Input nobody reads (docs/api.md, Background processes and Commands): a process in
a sandbox that never reads its stdin, and a client that writes faster than the
command reads, cost the agent and the server a bounded amount of memory; the rest
is refused with 429 ``stdin_full``, never queued."""

from __future__ import annotations

import json

import httpx

from tests.integration.test_live_stdin import base, error_of, exec_ws, start
from tests.server import LiveServer


def test_a_process_that_never_reads_cannot_fill_the_agent(
    api: httpx.Client, shared_sandbox: dict
) -> None:
    """The agent keeps at most 4 MiB of unread input per process; more is 429, whole,
    and the process takes input again once it reads."""
    sleeper = start(api, shared_sandbox, command="sleep 600; cat > /dev/null", stdin=True)
    url = f"{base(shared_sandbox)}/{sleeper['pid']}/stdin"
    chunk = b"y" * (3 * 1024 * 1024)
    assert api.post(url, content=chunk).status_code == 200
    for _ in range(3):  # refused every time, never queued
        error = error_of(api.post(url, content=chunk), 429)
        assert error["code"] == "stdin_full" and "has not read" in error["message"]
    assert api.post(url, content=b"z" * 1024).status_code == 200  # what fits is taken
    api.delete(f"{base(shared_sandbox)}/{sleeper['pid']}?signal=KILL")


def test_exec_websocket_input_a_command_never_reads_is_bounded(
    server: LiveServer, shared_sandbox: dict
) -> None:
    with exec_ws(server, shared_sandbox) as ws:
        ws.send(json.dumps({"command": "sleep 600", "stdin": True, "timeout": 120}))
        block = b"q" * (256 * 1024)
        full = None
        for _ in range(64):  # 16 MiB offered; the pipes and the window take far less
            ws.send(block)
        while full is None:
            event = json.loads(ws.recv(timeout=60))
            if event["type"] == "error":
                full = event
        assert full["code"] == "stdin_full"
