"""The abuse suite: hostile programs and hostile requests. Every case ends with the
server and the other sandboxes still answering."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server import LiveServer, running_server

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


# --------------------------------------------------------------- disk quota

QUOTA_MB = 64


@pytest.fixture(scope="module")
def small_disk(sandbox_image: str) -> Iterator[LiveServer]:
    """A server whose sandboxes may fill 64 MiB."""
    with running_server("sbxquota", {"SANDBOX_DISK_QUOTA": f"{QUOTA_MB}m"}) as server:
        yield server


def test_disk_fill_is_stopped_at_the_quota_and_deleting_frees_it(
    small_disk: LiveServer, api: httpx.Client, victim: str
) -> None:
    with small_disk.client("filler") as filler:
        box = filler.post("/sandboxes", json={"name": "filler", "keep_alive": True}).json()
        other = filler.post("/sandboxes", json={"name": "bystander", "keep_alive": True}).json()
        sid = box["id"]
        disk = filler.get(f"/sandboxes/{sid}").json()["disk"]
        assert disk["quota_bytes"] == QUOTA_MB * 2**20 and not disk["exceeded"]

        # 2 GiB into a 64 MiB quota: the writer is stopped, and says why on its stderr
        # (the command's whole process group goes: the echo never runs)
        out = run(filler, sid, "head -c 2G /dev/zero > /workspace/fill; echo went on", 120)
        assert out["exit_code"] == 137, out
        assert "went on" not in out["stdout"]
        assert "disk quota is used up" in out["stderr"], out
        size = int(run(filler, sid, "stat -c %s /workspace/fill")["stdout"])
        assert QUOTA_MB * 2**20 < size < 2 * 1024**3, size

        # over the quota: the files API refuses to add anything, with a clear error
        put = filler.put(
            f"/sandboxes/{sid}/files/content", params={"path": "note.txt"}, content=b"hi"
        )
        assert put.status_code == 507, put.text
        error = put.json()["error"]
        assert error["code"] == "disk_quota_exceeded"
        assert "Delete files" in error["message"] and "64.0 MiB" in error["message"]
        upload = filler.post(
            f"/sandboxes/{sid}/files/upload",
            params={"path": "/workspace"},
            files={"file": ("up.bin", b"x" * 1000)},
        )
        assert upload.status_code == 507, upload.text
        mkdir = filler.post(f"/sandboxes/{sid}/files/mkdir", json={"path": "newdir"})
        assert mkdir.status_code == 507, mkdir.text
        # a program writing while over the quota is stopped too
        late = run(filler, sid, "sleep 5 > /workspace/late")
        assert late["exit_code"] != 0 and "disk quota" in late["stderr"], late
        shown = filler.get(f"/sandboxes/{sid}").json()
        assert shown["disk"]["exceeded"] and shown["disk"]["used_bytes"] > QUOTA_MB * 2**20
        assert "disk quota" in shown["status_detail"]

        # the server, the other sandboxes (this tenant's and another's) keep answering
        still_fine(filler, other["id"])
        still_fine(api, victim)

        # deleting the file frees the quota: writing works again
        deleted = filler.delete(f"/sandboxes/{sid}/files", params={"path": "fill"})
        assert deleted.status_code == 204, deleted.text
        put = filler.put(
            f"/sandboxes/{sid}/files/content", params={"path": "note.txt"}, content=b"hi"
        )
        assert put.status_code in (200, 201), put.text
        assert run(filler, sid, "head -c 10M /dev/zero > /workspace/ok && echo ok")["stdout"] == (
            "ok\n"
        )
        disk = filler.get(f"/sandboxes/{sid}").json()["disk"]
        assert not disk["exceeded"] and disk["used_bytes"] < QUOTA_MB * 2**20


def test_an_upload_past_the_quota_is_refused_and_leaves_nothing(small_disk: LiveServer) -> None:
    with small_disk.client("uploader") as client:
        sid = client.post("/sandboxes", json={"name": "up", "keep_alive": True}).json()["id"]
        big = client.put(
            f"/sandboxes/{sid}/files/content",
            params={"path": "big.bin"},
            content=b"\0" * ((QUOTA_MB + 16) * 2**20),
        )
        assert big.status_code == 507, big.text
        assert big.json()["error"]["code"] == "disk_quota_exceeded"
        listing = client.get(f"/sandboxes/{sid}/files", params={"path": "/workspace"}).json()
        assert [e["name"] for e in listing["entries"]] == []  # no partial file left behind
        small = client.put(
            f"/sandboxes/{sid}/files/content", params={"path": "small.bin"}, content=b"1" * 4096
        )
        assert small.status_code in (200, 201), small.text


def test_hiding_data_in_an_unreadable_directory_still_counts(small_disk: LiveServer) -> None:
    with small_disk.client("hider") as client:
        sid = client.post("/sandboxes", json={"name": "hide", "keep_alive": True}).json()["id"]
        run(
            client,
            sid,
            "mkdir -p /workspace/h && for i in 1 2 3 4; do head -c 14M /dev/zero > "
            "/workspace/h/$i; done; chmod 000 /workspace/h",
        )
        # 56 MiB behind the mode + 12 MiB more would pass the 64 MiB quota
        put = client.put(
            f"/sandboxes/{sid}/files/content", params={"path": "x"}, content=b"x" * 12 * 2**20
        )
        assert put.status_code == 507, put.text
        assert "would pass" in put.json()["error"]["message"]
        mode = run(client, sid, "stat -c %a /workspace/h")["stdout"].strip()
        assert mode == "0"  # the walk put the mode back


def test_over_the_quota_process_output_stays_in_memory(small_disk: LiveServer) -> None:
    """A background process's output is kept on disk too; not past the quota."""
    with small_disk.client("logger") as client:
        sid = client.post("/sandboxes", json={"name": "logs", "keep_alive": True}).json()["id"]
        out = run(client, sid, "head -c 2G /dev/zero > /workspace/fill", 120)
        assert out["exit_code"] == 137, out
        started = client.post(
            f"/sandboxes/{sid}/processes", json={"command": "head -c 30M /dev/zero | tr '\\0' x"}
        )
        assert started.status_code == 201, started.text
        pid = started.json()["pid"]
        deadline = time.monotonic() + 30
        while client.get(f"/sandboxes/{sid}/processes/{pid}").json()["status"] != "exited":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        size = run(client, sid, f"stat -c %s /tmp/.sandbox-processes/{pid}.stdout")["stdout"]
        assert int(size) < 2**20, size  # not 30 MB on a full quota
        logs = client.get(f"/sandboxes/{sid}/processes/{pid}/logs")
        assert logs.status_code == 200 and "xxxx" in logs.text  # the tail, from memory


def test_a_loop_of_writers_is_stopped_whole(small_disk: LiveServer) -> None:
    """Killing only each writer would let a loop append forever, a bit each time."""
    with small_disk.client("looper") as client:
        sid = client.post("/sandboxes", json={"name": "loop", "keep_alive": True}).json()["id"]
        out = run(
            client,
            sid,
            "for i in $(seq 50); do head -c 200M /dev/zero >> /workspace/loop; done",
            120,
        )
        assert out["exit_code"] == 137, out
        size = int(run(client, sid, "stat -c %s /workspace/loop")["stdout"])
        assert size < 1024**3, size  # not 10 GB: the loop died with its first victim
        # a loop whose writers each leave its group (as an interactive shell's jobs
        # do) is killed when it starts a second writer over the quota
        script = "setsid head -c 200M /dev/zero >> /workspace/loop2"
        out = run(client, sid, f"for i in $(seq 50); do {script}; done; echo ended", 120)
        assert out["exit_code"] == 137 and "ended" not in out["stdout"], out
        size = int(run(client, sid, "stat -c %s /workspace/loop2")["stdout"])
        assert size < 1024**3, size
