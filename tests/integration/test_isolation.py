"""A hostile tenant cannot reach other sandboxes, the host, or private networks."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server import LiveServer, running_server


def run(api: httpx.Client, sandbox_id: str, command: str, timeout: float = 30) -> dict:
    response = api.post(
        f"/sandboxes/{sandbox_id}/exec", json={"command": command, "timeout": timeout}
    )
    assert response.status_code == 200, response.text
    return response.json()


def reach(api: httpx.Client, sandbox_id: str, host: str, port: int) -> bool:
    """Can the sandbox open a TCP connection to host:port? (3 s budget)"""
    probe = (
        'python3 -c "import socket,sys; s=socket.socket(); s.settimeout(3); '
        f"sys.exit(s.connect_ex(('{host}', {port})))\""
    )
    return run(api, sandbox_id, probe)["exit_code"] == 0


def serving(api: httpx.Client, sandbox_id: str, port: int) -> bool:
    """Wait (up to 20 s) until something listens on 127.0.0.1:port inside the sandbox."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if reach(api, sandbox_id, "127.0.0.1", port):
            return True
        time.sleep(0.3)
    return False


@pytest.fixture(scope="module")
def host_listener() -> Iterator[int]:
    """A TCP service on every host address, as a database or the server might be."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))  # noqa: S104 - the point: is it reachable from a sandbox?
    server.listen(16)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port
    stop.set()
    server.close()


@pytest.fixture(scope="module")
def pair(api: httpx.Client) -> tuple[str, str]:
    a = api.post("/sandboxes", json={"name": "iso-a", "keep_alive": True}).json()["id"]
    b = api.post("/sandboxes", json={"name": "iso-b", "keep_alive": True}).json()["id"]
    return a, b


def test_sandboxes_cannot_reach_each_other(api: httpx.Client, pair: tuple[str, str]) -> None:
    a, b = pair
    run(api, b, "setsid -f python3 -m http.server 8000 >/dev/null 2>&1")
    b_ip = run(api, b, "hostname -I")["stdout"].split()[0]
    assert serving(api, b, 8000)  # the service is up, inside b
    assert not reach(api, a, b_ip, 8000)


def test_host_and_gateway_are_unreachable(
    api: httpx.Client, pair: tuple[str, str], host_listener: int
) -> None:
    a, _ = pair
    gateway = run(api, a, "ip route | awk '/default/ {print $3}'")["stdout"].strip()
    assert gateway
    assert not reach(api, a, gateway, host_listener)
    # the same service is reachable from the host itself: only sandboxes are cut off
    with socket.create_connection(("127.0.0.1", host_listener), timeout=3):
        pass


def test_metadata_and_private_ranges_are_unreachable(
    api: httpx.Client, pair: tuple[str, str]
) -> None:
    a, _ = pair
    for host in ("169.254.169.254", "10.0.0.1", "192.168.0.1"):
        assert not reach(api, a, host, 80), host


def test_egress_none_has_no_network(server: LiveServer, api: httpx.Client) -> None:
    box = api.post("/sandboxes", json={"name": "offline", "egress": "none"}).json()
    assert box["egress"] == "none"
    links = run(api, box["id"], "ls /sys/class/net")["stdout"].split()
    assert links == ["lo"]
    # the agent still works over its socket, and loopback services are fine
    run(api, box["id"], "setsid -f python3 -m http.server 8001 >/dev/null 2>&1")
    assert serving(api, box["id"], 8001)
    api.delete(f"/sandboxes/{box['id']}")


def test_no_privileges_inside(api: httpx.Client, pair: tuple[str, str]) -> None:
    a, _ = pair
    out = run(
        api,
        a,
        "id -u; grep -E '^Cap(Eff|Bnd)' /proc/self/status | awk '{print $2}'; "
        "grep NoNewPrivs /proc/self/status | awk '{print $2}'; "
        "ls /var/run/docker.sock 2>&1 | head -1; "
        "mount -t tmpfs none /mnt 2>&1 | head -1",
    )["stdout"].splitlines()
    assert out[0] == "1000"
    assert out[1] == out[2] == "0000000000000000"
    assert out[3] == "1"
    assert "No such file" in out[4]
    assert "must be superuser" in out[5] or "permission denied" in out[5].lower()


def test_dns_still_resolves(api: httpx.Client, pair: tuple[str, str]) -> None:
    """The host's name servers may be in a private range: lookups still work."""
    a, _ = pair
    out = run(api, a, "getent hosts pypi.org || getent hosts deb.debian.org")
    assert out["exit_code"] == 0 and out["stdout"].strip(), out


# --------------------------------------------------------------- gVisor

RUNSC_ENTRY = (
    '"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
    '"runtimeArgs": ["--network=host", "--host-uds=all"]}}'
)


@pytest.fixture(scope="module")
def gvisor(sandbox_image: str) -> Iterator[LiveServer]:
    """A server whose sandboxes run under gVisor (SANDBOX_RUNTIME=runsc)."""
    runtimes = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True
    ).stdout
    if "runsc" not in runtimes:
        pytest.fail(
            "gVisor is not registered with Docker: `apt-get install runsc`, add "
            f"{RUNSC_ENTRY} to /etc/docker/daemon.json and reload dockerd (SIGHUP).",
            pytrace=False,
        )
    with running_server("sbxgvisor", {"SANDBOX_RUNTIME": "runsc"}) as server:
        yield server


def test_gvisor_runtime_runs_sandboxes_on_its_own_kernel(
    gvisor: LiveServer, host_listener: int
) -> None:
    with gvisor.client("gvisor") as api:
        sid = api.post("/sandboxes", json={"name": "g", "keep_alive": True}).json()["id"]
        runtime = subprocess.run(
            ["docker", "inspect", "-f", "{{.HostConfig.Runtime}}", f"{gvisor.prefix}-{sid}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert runtime == "runsc"
        kernel = run(api, sid, "dmesg | head -1; grep Uid: /proc/self/status")
        assert "Starting gVisor" in kernel["stdout"]  # the Sentry, not the host's kernel
        # real, effective and saved uid: wholly the sandbox user under gVisor too
        assert kernel["stdout"].split("Uid:")[1].split()[:3] == ["1000"] * 3
        # everything works as under runc: files, exec, the firewall, both sleep tiers
        put = api.put(f"/sandboxes/{sid}/files/content", params={"path": "a.txt"}, content=b"kept")
        assert put.status_code == 201, put.text
        gateway = run(api, sid, "ip route | awk '/default/ {print $3}'")["stdout"].strip()
        assert gateway and not reach(api, sid, gateway, host_listener)
        for tier in ("pause", "stop"):
            api.post(f"/sandboxes/{sid}/sleep", json={"tier": tier}).raise_for_status()
            assert run(api, sid, "cat /workspace/a.txt")["stdout"] == "kept"
