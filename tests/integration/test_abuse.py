"""The abuse suite: hostile programs and hostile requests. Every case ends with the
server and the other sandboxes still answering."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.server import LiveServer

pytestmark = pytest.mark.timeout(600)


def run(api: httpx.Client, sandbox_id: str, command: str, timeout: float = 60) -> dict:
    response = api.post(
        f"/sandboxes/{sandbox_id}/exec", json={"command": command, "timeout": timeout}
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def victim(api: httpx.Client) -> str:
    return api.post("/sandboxes", json={"name": "victim", "keep_alive": True}).json()["id"]


@pytest.fixture(scope="module")
def attacker(api: httpx.Client) -> str:
    return api.post("/sandboxes", json={"name": "attacker", "keep_alive": True}).json()["id"]


def still_fine(api: httpx.Client, *sandbox_ids: str) -> None:
    assert api.get("/sandboxes").status_code == 200
    for sandbox_id in sandbox_ids:
        assert run(api, sandbox_id, "echo alive", timeout=30)["stdout"] == "alive\n"


def test_fork_bomb(api: httpx.Client, attacker: str, victim: str) -> None:
    out = run(api, attacker, "bomb() { bomb | bomb & }; bomb", timeout=5)
    assert out["timed_out"] or out["exit_code"] is not None
    still_fine(api, victim)
    # the bomb's process group is killed once the command has returned; until then
    # the attacker's own sandbox answers 429 (its process limit), then recovers
    deadline = time.monotonic() + 30
    while True:
        response = api.post(
            f"/sandboxes/{attacker}/exec", json={"command": "ps -e --no-headers | wc -l"}
        )
        count = response.json().get("stdout", "").strip() if response.status_code == 200 else ""
        if count.isdigit() and int(count) < 20:
            break
        if response.status_code != 200:
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "limit_reached"
        assert time.monotonic() < deadline, "the sandbox did not recover from the fork bomb"
        time.sleep(0.5)
    still_fine(api, attacker)


def test_memory_bomb(api: httpx.Client, attacker: str, victim: str) -> None:
    out = run(api, attacker, "python3 -c 'x = bytearray(4 * 1024**3)'", timeout=60)
    assert out["exit_code"] != 0  # killed or MemoryError: the 1 GiB limit holds
    still_fine(api, attacker, victim)


def test_cpu_spin_in_many_processes(api: httpx.Client, attacker: str, victim: str) -> None:
    run(
        api,
        attacker,
        "for i in $(seq 8); do setsid -f bash -c 'while :; do :; done'; done; sleep 1",
    )
    still_fine(api, victim)
    out = run(api, victim, "python3 -c 'print(sum(range(10**6)))'")
    assert out["stdout"] == "499999500000\n"
    run(api, attacker, "pkill -KILL -u sandbox bash || true")


def test_thousands_of_files(api: httpx.Client, attacker: str) -> None:
    out = run(
        api,
        attacker,
        "mkdir -p /workspace/many && cd /workspace/many && seq 20000 | xargs touch && ls | wc -l",
    )
    assert out["stdout"].strip() == "20000"
    listing = api.get(f"/sandboxes/{attacker}/files", params={"path": "/workspace/many"})
    assert listing.status_code == 200
    assert len(listing.json()["entries"]) == 20000
    run(api, attacker, "rm -rf /workspace/many")


def test_output_flood_does_not_hurt_others(api: httpx.Client, attacker: str, victim: str) -> None:
    out = run(api, attacker, "yes | head -c 100000000 | wc -c")
    assert out["stdout"].strip() == "100000000"
    still_fine(api, victim)


@pytest.mark.parametrize(
    "path",
    [
        "../../../../etc/shadow",
        "/workspace/../../etc/shadow",
        "/etc/shadow",
        "/proc/1/root/etc/shadow",
    ],
)
def test_path_traversal_reaches_only_the_container(
    api: httpx.Client, attacker: str, path: str
) -> None:
    response = api.get(f"/sandboxes/{attacker}/files/content", params={"path": path})
    # the container's own shadow file is root-only: denied, never the host's file
    assert response.status_code in (403, 404), response.text
    assert response.json()["error"]["code"]


def test_symlink_escape_reaches_only_the_container(api: httpx.Client, attacker: str) -> None:
    run(api, attacker, "ln -sf /etc/hostname /workspace/host-link; ln -sf / /workspace/root-link")
    inside = run(api, attacker, "cat /etc/hostname")["stdout"]
    via_link = api.get(
        f"/sandboxes/{attacker}/files/content", params={"path": "/workspace/host-link"}
    )
    assert via_link.status_code == 200
    assert via_link.text == inside == "sandbox\n"  # the container's file, not the host's


# --------------------------------------------------------------- every endpoint


def operations(server: LiveServer) -> list[tuple[str, str, dict]]:
    spec = httpx.get(server.url + "/api/v1/openapi.json").json()
    found = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), path, operation))
    assert len(found) > 10
    return found


def concrete(path: str, sandbox_id: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "sandbox_id":
            return sandbox_id
        if name == "port":
            return "8080"
        if name in ("pid",):
            return "1"
        return "x1"

    return re.sub(r"\{([a-z_]+)\}", fill, path).removeprefix("/api/v1")


def test_someone_elses_sandbox_is_not_found_on_every_endpoint(
    server: LiveServer, victim: str
) -> None:
    with server.client("intruder") as intruder:
        checked = 0
        for method, path, _ in operations(server):
            if "{sandbox_id}" not in path:
                continue
            response = intruder.request(method, concrete(path, victim), json={})
            assert response.status_code in (400, 404), (method, path, response.text)
            if response.status_code == 400:  # input checked first; then it must be 404
                continue
            assert response.json()["error"]["code"] == "not_found", (method, path)
            checked += 1
        assert checked > 10


def test_malformed_and_oversized_json_on_every_endpoint(
    server: LiveServer, api: httpx.Client, victim: str
) -> None:
    big = json.dumps({"padding": "x" * (5 * 1024 * 1024)}).encode()
    for method, path, operation in operations(server):
        if method not in ("POST", "PUT", "PATCH") or "requestBody" not in operation:
            continue
        content = operation["requestBody"].get("content", {})
        if "application/json" not in content:
            continue
        url = concrete(path, victim)
        headers = {"Content-Type": "application/json"}
        broken = api.request(method, url, content=b'{"unterminated": ', headers=headers)
        assert broken.status_code == 400, (method, path, broken.text)
        assert broken.json()["error"]["code"] in ("invalid_json", "invalid_request")
        wrong = api.request(method, url, content=b"[1, 2, 3]", headers=headers)
        assert wrong.status_code == 400, (method, path, wrong.text)
        oversized = api.request(method, url, content=big, headers=headers)
        assert oversized.status_code in (400, 413), (method, path, oversized.text)
        assert oversized.status_code != 500
    still_fine(api, victim)
