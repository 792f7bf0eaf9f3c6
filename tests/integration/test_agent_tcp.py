"""The agent over the network transport (SANDBOX_AGENT_TRANSPORT=tcp): the engine
publishes the agent's port on the host's loopback and the server dials it there,
never the container's own address. Every feature works as over the unix socket,
through sleep in both tiers and a wake that gives the agent a new port."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import httpx
import pytest

from tests.integration.test_preview import expose, preview, run, start_app
from tests.integration.test_terminals import Screen, open_terminal
from tests.server import LiveServer, running_server

AGENT_PORT = "7077/tcp"
APP_PORT = 18090
APP = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"over tcp"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("0.0.0.0", int(sys.argv[1])), Hello).serve_forever()
"""


@pytest.fixture(scope="module")
def tcp_server(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxtcp", {"SANDBOX_AGENT_TRANSPORT": "tcp"}) as server:
        yield server


@pytest.fixture(scope="module")
def api(tcp_server: LiveServer) -> Iterator[httpx.Client]:
    with tcp_server.client("tcpuser") as client:
        yield client


def port_bindings(server: LiveServer, sandbox_id: str) -> list[dict[str, str]]:
    engine = docker.from_env()
    try:
        container = engine.containers.get(f"{server.prefix}-{sandbox_id}")
        return list((container.attrs["NetworkSettings"]["Ports"] or {}).get(AGENT_PORT) or [])
    finally:
        engine.close()


def test_every_feature_through_the_published_port(
    tcp_server: LiveServer, api: httpx.Client
) -> None:
    box = api.post("/sandboxes", json={"name": "tcp-features"}).json()
    sid = box["id"]
    bindings = port_bindings(tcp_server, sid)
    assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}

    assert run(api, box, "echo hi from $(whoami)")["stdout"] == "hi from sandbox\n"

    put = api.put(f"/sandboxes/{sid}/files/content", params={"path": "notes.txt"}, content=b"kept")
    assert put.status_code == 201, put.text
    got = api.get(f"/sandboxes/{sid}/files/content", params={"path": "notes.txt"})
    assert got.content == b"kept"

    with open_terminal(tcp_server, box, "main", user="tcpuser") as ws:
        screen = Screen(ws)
        ws.send(b"echo tcp-$((20+22))\n")
        screen.until(b"tcp-42")

    started = api.post(f"/sandboxes/{sid}/processes", json={"command": "sleep 300"})
    assert started.status_code == 201, started.text
    assert api.get(f"/sandboxes/{sid}/processes/{started.json()['pid']}").status_code == 200

    start_app(api, box, APP, "tcp_app", APP_PORT)
    listening = api.get(f"/sandboxes/{sid}/ports").json()["listening"]
    assert 7077 not in listening  # the agent's own listener is no program to preview
    with preview(tcp_server, expose(api, box, APP_PORT)["url"]) as web:
        assert web.get("/").text == "over tcp"


def test_sleep_in_both_tiers_and_wake_on_a_new_port(
    tcp_server: LiveServer, api: httpx.Client
) -> None:
    box = api.post("/sandboxes", json={"name": "tcp-sleepy"}).json()
    sid = box["id"]
    run(api, box, "echo before > /workspace/state.txt")
    first = port_bindings(tcp_server, sid)[0]["HostPort"]

    assert api.post(f"/sandboxes/{sid}/sleep", json={"tier": "pause"}).status_code == 200
    assert api.get(f"/sandboxes/{sid}").json()["sleep_tier"] == "paused"
    assert run(api, box, "cat /workspace/state.txt")["stdout"] == "before\n"
    assert port_bindings(tcp_server, sid)[0]["HostPort"] == first  # an unpause keeps it

    assert api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"}).status_code == 200
    assert api.get(f"/sandboxes/{sid}").json()["sleep_tier"] == "stopped"
    assert port_bindings(tcp_server, sid) == []  # nothing is published while it sleeps
    # The engine gives the next free port at every start: the server must find the
    # agent where it is now, not where it was.
    assert run(api, box, "cat /workspace/state.txt")["stdout"] == "before\n"
    second = port_bindings(tcp_server, sid)[0]["HostPort"]
    assert second != first
    assert {b["HostIp"] for b in port_bindings(tcp_server, sid)} == {"127.0.0.1"}
    now = api.get(f"/sandboxes/{sid}").json()
    assert now["status"] == "running" and now["status_detail"] == ""
