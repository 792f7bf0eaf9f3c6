"""Egress allow-lists: host names only through the filtering proxy, CIDRs directly,
nothing else; changed on a running sandbox by PATCH.

The far ends are never real hosts: a network namespace this module creates answers
on two addresses from the documentation ranges (TEST-NET-2 and -3), which the host
routes into it, and the test server's proxy resolves the test's names to them
(``SANDBOX_EGRESS_HOSTS``), so no real name is ever looked up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests import netns
from tests.integration.test_isolation import reach, run
from tests.netns import sh
from tests.server import LiveServer, running_server


@dataclass
class Ends:
    allowed_ip: str  # "allowed.test", "www.allowed.test"
    other_ip: str  # "other.test"
    port: int


@pytest.fixture(scope="module")
def far_end() -> Iterator[Ends]:
    with netns.far_end() as ends:
        yield Ends(ends.first_ip, ends.second_ip, ends.port)


@pytest.fixture(scope="module")
def egress_server(sandbox_image: str, far_end: Ends) -> Iterator[LiveServer]:
    names = {
        "allowed.test": far_end.allowed_ip,
        "www.allowed.test": far_end.allowed_ip,
        "other.test": far_end.other_ip,
        "metadata.test": "169.254.169.254",
    }
    hosts = ",".join(f"{name}={address}" for name, address in names.items())
    with running_server("sbxegress", {"SANDBOX_EGRESS_HOSTS": hosts}) as server:
        yield server


@pytest.fixture(scope="module")
def eapi(egress_server: LiveServer) -> Iterator[httpx.Client]:
    with egress_server.client("egress") as client:
        yield client


def make(api: httpx.Client, name: str, egress: object) -> dict:
    response = api.post("/sandboxes", json={"name": name, "keep_alive": True, "egress": egress})
    assert response.status_code == 201, response.text
    return response.json()


def curl(api: httpx.Client, sandbox_id: str, url: str) -> tuple[str, str]:
    """(status, body) of a GET through the sandbox's own proxy settings."""
    out = run(api, sandbox_id, f"curl -sS --max-time 10 -w '\\n%{{http_code}}' {url}")
    body, _, status = out["stdout"].rpartition("\n")
    return status, body + out["stderr"]


# A client that CONNECTs through the sandbox's proxy and then sends a real
# ClientHello naming argv[2]: prints the far end's answer ("TLS-OK" when it got
# there), or what the proxy said.
TUNNEL = r"""
import base64, os, socket, ssl, sys, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
auth = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
sock = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
sock.sendall(f"CONNECT {sys.argv[1]} HTTP/1.1\r\nHost: {sys.argv[1]}\r\n"
             f"Proxy-Authorization: Basic {auth}\r\n\r\n".encode())
answer = sock.recv(4096)
if not answer.startswith(b"HTTP/1.1 200"):
    print(answer.decode(errors="replace")); sys.exit(0)
hello = ssl.create_default_context().wrap_bio(
    ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=sys.argv[2])
try:
    hello.do_handshake()
except ssl.SSLWantReadError:
    pass
sock.sendall(outgoing.read())
try:
    print(sock.recv(4096))
except OSError as exc:
    print("closed", exc)
"""


def tunnel(api: httpx.Client, sandbox_id: str, target: str, sni: str) -> str:
    out = run(api, sandbox_id, f"python3 -c '{TUNNEL}' {target} {sni}")
    assert out["exit_code"] == 0, out
    return str(out["stdout"])


# ------------------------------------------------------------------ the API's contract


def test_allow_lists_are_checked_and_echoed(eapi: httpx.Client) -> None:
    for entry, code in [
        ("not a host", "invalid_egress"),
        ("*", "invalid_egress"),
        ("203.0.113.0/33", "invalid_egress"),
        ("10.0.0.0/8", "egress_forbidden"),
        ("169.254.169.254", "egress_forbidden"),
        ("0.0.0.0/0", "egress_forbidden"),
        ("fd00::/8", "egress_forbidden"),
    ]:
        response = eapi.post("/sandboxes", json={"name": "bad", "egress": {"allow": [entry]}})
        assert response.status_code == 400, (entry, response.text)
        error = response.json()["error"]
        assert error["code"] == code and repr(entry) in error["message"], (entry, error)
    too_many = {"allow": [f"h{i}.example.org" for i in range(65)]}
    response = eapi.post("/sandboxes", json={"name": "bad", "egress": too_many})
    assert response.status_code == 400 and "at most 64" in response.json()["error"]["message"]
    assert eapi.post("/sandboxes", json={"egress": "some"}).status_code == 400
    assert all(s["name"] != "bad" for s in eapi.get("/sandboxes").json()["sandboxes"])

    allow = ["allowed.test", "*.Example.org", "203.0.113.0/24", "2606:4700::/32"]
    box = make(eapi, "shape", {"allow": allow})
    assert box["egress"] == {"allow": ["allowed.test", "*.example.org", *allow[2:]]}
    assert box["settings_apply"]["egress"] == "now"
    assert eapi.get(f"/sandboxes/{box['id']}").json()["egress"] == box["egress"]
    eapi.delete(f"/sandboxes/{box['id']}")


# ------------------------------------------------------------------ host names: the proxy


@pytest.fixture(scope="module")
def listed(eapi: httpx.Client) -> dict:
    return make(eapi, "listed", {"allow": ["allowed.test", "*.allowed.test"]})


def test_allowed_names_pass_the_proxy_and_others_get_403(
    eapi: httpx.Client, listed: dict, far_end: Ends
) -> None:
    sid = listed["id"]
    status, body = curl(eapi, sid, f"http://allowed.test:{far_end.port}/")
    assert status == "200" and f"hello {far_end.allowed_ip} host=allowed.test" in body, body
    status, body = curl(eapi, sid, f"http://www.allowed.test:{far_end.port}/x")
    assert status == "200" and "host=www.allowed.test" in body, body
    status, body = curl(eapi, sid, f"http://other.test:{far_end.port}/")
    assert status == "403", body
    assert "other.test is not on this sandbox's allow-list" in body, body
    # by address, a name's address is not on the list either
    status, body = curl(eapi, sid, f"http://{far_end.allowed_ip}:{far_end.port}/")
    assert status == "403" and "not on this sandbox's allow-list" in body, body


def test_a_created_code_context_goes_through_the_proxy_too(
    eapi: httpx.Client, listed: dict, far_end: Ends
) -> None:
    sid = listed["id"]
    context = eapi.post(f"/sandboxes/{sid}/code/contexts", json={"language": "python"})
    assert context.status_code == 201, context.text
    source = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://allowed.test:{far_end.port}/').read().decode())"
    )
    ran = eapi.post(
        f"/sandboxes/{sid}/code/run", json={"code": source, "context": context.json()["id"]}
    )
    assert ran.status_code == 200 and "host=allowed.test" in ran.json()["stdout"], ran.text


def test_connect_checks_the_host_and_the_tls_server_name(
    eapi: httpx.Client, listed: dict, far_end: Ends
) -> None:
    sid = listed["id"]
    target = f"allowed.test:{far_end.port}"
    assert "TLS-OK" in tunnel(eapi, sid, target, "allowed.test")
    refused = tunnel(eapi, sid, target, "other.test")
    assert "TLS-OK" not in refused, refused
    answer = tunnel(eapi, sid, f"other.test:{far_end.port}", "other.test")
    assert answer.startswith("HTTP/1.1 403") and "other.test is not on" in answer, answer
    # no user part, spaces or other characters smuggled into the host
    answer = tunnel(eapi, sid, f"x@www.allowed.test:{far_end.port}", "www.allowed.test")
    assert answer.startswith("HTTP/1.1 400") and "is not a host and port" in answer, answer


def test_names_resolving_to_forbidden_addresses_are_refused(
    eapi: httpx.Client, far_end: Ends
) -> None:
    box = make(eapi, "rebind", {"allow": ["metadata.test"]})
    status, body = curl(eapi, box["id"], "http://metadata.test/latest/meta-data/")
    assert status == "403" and "may never reach" in body, body
    eapi.delete(f"/sandboxes/{box['id']}")


def test_direct_traffic_is_dropped_unless_its_cidr_is_allowed(
    eapi: httpx.Client, listed: dict, far_end: Ends
) -> None:
    # an allowed name is reached through the proxy only, never directly
    assert not reach(eapi, listed["id"], far_end.allowed_ip, far_end.port)
    assert not reach(eapi, listed["id"], far_end.other_ip, far_end.port)
    box = make(eapi, "cidr", {"allow": [f"{far_end.other_ip}/32"]})
    assert reach(eapi, box["id"], far_end.other_ip, far_end.port)
    assert not reach(eapi, box["id"], far_end.allowed_ip, far_end.port)
    eapi.delete(f"/sandboxes/{box['id']}")


def test_a_sandbox_cannot_use_another_sandboxs_proxy_identity(
    eapi: httpx.Client, egress_server: LiveServer, listed: dict, far_end: Ends
) -> None:
    """Another tenant's sandbox with an allow-list of its own reaches the proxy too:
    the victim's credentials are refused from its address."""
    env = run(eapi, listed["id"], "echo $HTTP_PROXY")["stdout"].strip()
    assert env.startswith(f"http://{listed['id']}:")
    with egress_server.client("mallory") as mallory:
        own = make(mallory, "thief", {"allow": ["www.allowed.test"]})
        stolen = f"curl -sS --max-time 10 -x {env} -w '\\n%{{http_code}}' "
        out = run(mallory, own["id"], stolen + f"http://allowed.test:{far_end.port}/")
        assert out["stdout"].endswith("407"), out
        assert "belong to another sandbox" in out["stdout"]
        # an "all" sandbox has no way in to the proxy at all
        open_box = make(mallory, "open", "all")
        gateway = env.rsplit("@", 1)[1].split(":")[0]
        assert not reach(mallory, open_box["id"], gateway, 3128)
        for box in (own, open_box):
            mallory.delete(f"/sandboxes/{box['id']}")


# ------------------------------------------------------------------ PATCH, all and none


def test_patch_changes_a_running_sandbox(
    eapi: httpx.Client, egress_server: LiveServer, far_end: Ends
) -> None:
    box = make(eapi, "patched", {"allow": ["allowed.test"]})
    sid, other = box["id"], f"http://other.test:{far_end.port}/"
    assert curl(eapi, sid, other)[0] == "403"
    # a program that keeps running sees each change
    run(eapi, sid, "setsid -f python3 -c 'import time; time.sleep(600)' >/dev/null 2>&1")

    def patch(egress: object) -> dict:
        response = eapi.patch(f"/sandboxes/{sid}", json={"egress": egress})
        assert response.status_code == 200, response.text
        return response.json()

    assert patch({"allow": ["allowed.test", "other.test"]})["egress"]["allow"][1] == "other.test"
    assert curl(eapi, sid, other)[0] == "200"
    assert not reach(eapi, sid, far_end.other_ip, far_end.port)
    assert patch("all")["egress"] == "all"
    assert reach(eapi, sid, far_end.other_ip, far_end.port)
    patch({"allow": [f"{far_end.other_ip}/32"]})
    assert reach(eapi, sid, far_end.other_ip, far_end.port)
    assert not reach(eapi, sid, far_end.allowed_ip, far_end.port)
    assert patch("none")["egress"] == "none"
    assert not reach(eapi, sid, far_end.other_ip, far_end.port)
    assert curl(eapi, sid, f"http://allowed.test:{far_end.port}/")[0] != "200"
    # a stopped sandbox wakes with a new address: its rules follow it
    patch({"allow": ["allowed.test"]})
    eapi.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"}).raise_for_status()
    assert curl(eapi, sid, f"http://allowed.test:{far_end.port}/")[0] == "200"
    assert not reach(eapi, sid, far_end.other_ip, far_end.port)
    eapi.delete(f"/sandboxes/{sid}")
    bridge_rules = sh("iptables", "-S", "DOCKER-USER") + sh("iptables", "-S", "INPUT")
    from sandboxes.backends.egress_rules import chain_name

    assert chain_name(f"{egress_server.prefix}-{sid}") not in bridge_rules


def test_all_and_none_behave_as_before(eapi: httpx.Client, far_end: Ends) -> None:
    box = make(eapi, "open", "all")
    assert box["egress"] == "all"
    assert reach(eapi, box["id"], far_end.allowed_ip, far_end.port)
    assert reach(eapi, box["id"], far_end.other_ip, far_end.port)
    assert run(eapi, box["id"], "env | grep -ci proxy || true")["stdout"].strip() == "0"
    offline = make(eapi, "offline", "none")
    assert run(eapi, offline["id"], "ls /sys/class/net")["stdout"].split() == ["lo"]
    response = eapi.patch(f"/sandboxes/{offline['id']}", json={"egress": {"allow": ["a.test"]}})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "egress_needs_network"
    for sandbox in (box, offline):
        eapi.delete(f"/sandboxes/{sandbox['id']}")


def test_an_allow_listed_sandbox_has_its_own_chain_ending_in_drop(
    egress_server: LiveServer, listed: dict
) -> None:
    """The allow-listed sandbox's chain ends in a DROP, reached by its address."""
    from sandboxes.backends.egress_rules import chain_name

    chain = chain_name(f"{egress_server.prefix}-{listed['id']}")
    rules = sh("iptables", "-S", chain).splitlines()
    assert rules[-1] == f"-A {chain} -j DROP", rules
    network = json.loads(sh("docker", "network", "inspect", f"{egress_server.prefix}-net"))[0]
    bridge = network["Options"]["com.docker.network.bridge.name"]
    assert any(
        f"-j {chain}" in r and bridge in r for r in sh("iptables", "-S", "DOCKER-USER").splitlines()
    )


def test_a_server_without_the_firewall_refuses_allow_lists(sandbox_image: str) -> None:
    with (
        running_server("sbxegoff", {"SANDBOX_BLOCK_PRIVATE_NETWORKS": "false"}) as server,
        server.client("open") as api,
    ):
        response = api.post("/sandboxes", json={"egress": {"allow": ["allowed.test"]}})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "egress_unavailable"
        assert api.get("/sandboxes").json()["sandboxes"] == []
