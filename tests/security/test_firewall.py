"""The host firewall keeps a sandbox off every non-public range, IPv6 included, and
fails closed: a server that cannot install it gives sandboxes no network at all.

Targets are never real hosts: a network namespace on this machine answers on
addresses in the ranges under test, so only loopback-like local traffic is sent.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_isolation import reach, run
from tests.server import LiveServer, running_server

# Ranges a sandbox must not reach (the firewall's whole list), and one routable address in
# each that a local namespace can answer on (0.0.0.0/8 and 127.0.0.0/8 are never
# routed by Linux, so they are checked in the rules only).
RANGES = {
    "0.0.0.0/8": None,
    "10.0.0.0/8": None,
    "100.64.0.0/10": "100.64.0.1",
    "127.0.0.0/8": None,
    "169.254.0.0/16": None,
    "172.16.0.0/12": None,
    "192.0.0.0/24": "192.0.0.200",
    "192.168.0.0/16": None,
    "198.18.0.0/15": "198.18.0.1",
    "240.0.0.0/4": "240.0.0.1",
}
LISTEN = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16); print('ready', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.close()\n"
)


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def bridge_of(server: LiveServer) -> str:
    network = json.loads(sh("docker", "network", "inspect", f"{server.prefix}-net"))[0]
    assert network["EnableIPv6"] is False
    return network["Options"]["com.docker.network.bridge.name"]


@pytest.fixture(scope="module")
def targets() -> Iterator[int]:
    """A namespace on this machine listening on one address of each routable range.

    The host routes those addresses into the namespace, so a sandbox's connection
    would be forwarded there by the host unless the firewall drops it.
    """
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"sbxfw-{tag}", f"fwh{tag}", f"fwn{tag}"
    port = 18000 + secrets.randbelow(1000)
    sh("ip", "netns", "add", ns)
    listener = None
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        sh("ip", "addr", "add", "198.18.255.1/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        inside = ["ip", "netns", "exec", ns]
        sh(*inside, "ip", "addr", "add", "198.18.255.2/24", "dev", ns_if)
        sh(*inside, "ip", "link", "set", ns_if, "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "route", "add", "default", "via", "198.18.255.1")
        for address in filter(None, RANGES.values()):
            sh(*inside, "ip", "addr", "add", f"{address}/32", "dev", "lo")
            sh("ip", "route", "add", f"{address}/32", "via", "198.18.255.2", "dev", host_if)
            # never a real host: the route must lead into the namespace
            assert f"dev {host_if}" in sh("ip", "route", "get", address)
        listener = subprocess.Popen(
            [*inside, sys.executable, "-c", LISTEN, str(port)], stdout=subprocess.PIPE, text=True
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield port
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_every_blocked_range_is_dropped_from_the_sandboxes_bridge(
    server: LiveServer, api: httpx.Client, targets: int
) -> None:
    box = api.post("/sandboxes", json={"name": "fw-ranges", "keep_alive": True}).json()
    assert box["egress"] == "all" and box["egress_detail"] == ""
    rules = sh("iptables", "-S", "DOCKER-USER").splitlines()
    bridge = bridge_of(server)
    for cidr in RANGES:
        assert f"-A DOCKER-USER -d {cidr} -i {bridge} -j DROP" in rules, cidr
    for cidr, address in RANGES.items():
        if address is None:
            continue
        # the target answers from the host: only the sandbox is cut off
        with socket.create_connection((address, targets), timeout=3):
            pass
        assert not reach(api, box["id"], address, targets), cidr
    api.delete(f"/sandboxes/{box['id']}")


def test_sandboxes_have_no_ipv6(server: LiveServer, api: httpx.Client) -> None:
    box = api.post("/sandboxes", json={"name": "fw-ipv6", "keep_alive": True}).json()
    addresses = run(api, box["id"], "ip -6 addr")["stdout"]
    # neither a routable address nor a link-local one (to the host or another sandbox)
    assert "scope global" not in addresses and "scope link" not in addresses, addresses
    bridge = bridge_of(server)
    assert Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").read_text().strip() == "1"
    for chain in ("INPUT", "FORWARD"):
        assert f"-A {chain} -i {bridge} -j DROP" in sh("ip6tables", "-S", chain).splitlines()
    api.delete(f"/sandboxes/{box['id']}")


@pytest.fixture(scope="module")
def no_iptables(sandbox_image: str) -> Iterator[LiveServer]:
    """A server that cannot install the firewall: iptables is not on its PATH."""
    with running_server("sbxnofw", {"PATH": "/usr/bin:/bin"}) as server:
        yield server


def test_without_the_firewall_sandboxes_get_no_network(no_iptables: LiveServer) -> None:
    with no_iptables.client("mallory") as api:
        response = api.post("/sandboxes", json={"name": "open", "egress": "all"})
        assert response.status_code == 201, response.text
        box = response.json()
        assert box["egress"] == "none"
        assert "firewall rules" in box["egress_detail"]
        assert "iptables is not installed" in box["egress_detail"]
        assert api.get(f"/sandboxes/{box['id']}").json()["egress_detail"] == box["egress_detail"]
        links = run(api, box["id"], "ls /sys/class/net; ip -o link | wc -l")["stdout"].split()
        assert links == ["lo", "1"]
        # the agent still answers over its socket: the sandbox works, offline
        assert run(api, box["id"], "echo ok")["stdout"] == "ok\n"


@pytest.fixture
def own_server(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxfwreboot") as server:
        yield server


def test_rules_lost_on_a_reboot_are_back_before_a_sandbox_runs_again(
    own_server: LiveServer,
) -> None:
    """A host reboot loses the rules while the containers stay: the engine must not
    start a sandbox on its own, and the server puts the rules back before it does."""
    from sandboxes.backends.isolation import release_bridge

    with own_server.client("rebooted") as api:
        box = api.post("/sandboxes", json={"name": "r"}).json()
        assert run(api, box["id"], "true")["exit_code"] == 0
        policy = sh(
            "docker",
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            f"{own_server.prefix}-{box['id']}",
        )
        assert policy.strip() == "no"
        assert api.post(f"/sandboxes/{box['id']}/sleep", json={"tier": "stop"}).is_success
        bridge = bridge_of(own_server)
        release_bridge(bridge)  # what a reboot does to them
        assert bridge not in sh("iptables", "-S", "DOCKER-USER")
        own_server.restart()  # a new server process, as after the reboot
        assert run(api, box["id"], "echo back")["stdout"] == "back\n"
        assert f"-d 169.254.0.0/16 -i {bridge} -j DROP" in sh("iptables", "-S", "DOCKER-USER")
