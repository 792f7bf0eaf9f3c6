"""Sandboxes API (docs/api.md, Sandboxes) against the real engine."""

from __future__ import annotations

import concurrent.futures
import re
import subprocess

import httpx

from tests.server import LiveServer


def container_attrs(name: str) -> dict[str, str]:
    fmt = (
        "{{.Config.User}}|{{.HostConfig.CapDrop}}|{{.HostConfig.CapAdd}}|{{.HostConfig.SecurityOpt}}|"
        "{{.HostConfig.PidsLimit}}|{{.HostConfig.Memory}}|{{.HostConfig.NanoCpus}}|"
        "{{.HostConfig.LogConfig.Config}}|{{.HostConfig.Privileged}}|{{len .Mounts}}"
    )
    out = subprocess.run(
        ["docker", "inspect", "-f", fmt, name], capture_output=True, text=True, check=True
    ).stdout.strip()
    keys = [
        "user", "cap_drop", "cap_add", "security_opt", "pids", "memory", "cpus", "log", "priv",
        "mounts",
    ]  # fmt: skip
    return dict(zip(keys, out.split("|"), strict=True))


def test_create_get_list_patch_delete(server: LiveServer, api: httpx.Client) -> None:
    created = api.post("/sandboxes", json={"name": "lifecycle", "env": {"GREETING": "hi"}})
    assert created.status_code == 201, created.text
    box = created.json()
    assert re.fullmatch(r"[a-z0-9]{12}", box["id"])
    assert box["name"] == "lifecycle"
    assert box["status"] == "running"
    assert box["sleep_after"] == 600 and box["keep_alive"] is False

    again = api.post("/sandboxes", json={"name": "lifecycle"})
    assert again.status_code == 200
    assert again.json()["id"] == box["id"]

    assert box["id"] in [s["id"] for s in api.get("/sandboxes").json()["sandboxes"]]
    assert api.get(f"/sandboxes/{box['id']}").json()["name"] == "lifecycle"

    patched = api.patch(f"/sandboxes/{box['id']}", json={"sleep_after": 0, "keep_alive": True})
    assert patched.status_code == 200
    assert patched.json()["sleep_after"] == 0 and patched.json()["keep_alive"] is True

    out = api.post(f"/sandboxes/{box['id']}/exec", json={"command": "echo $GREETING"}).json()
    assert out["stdout"] == "hi\n"

    assert api.delete(f"/sandboxes/{box['id']}").status_code == 204
    assert api.get(f"/sandboxes/{box['id']}").status_code == 404
    assert not [c for c in server.containers() if box["id"] in c]
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{server.prefix}-{box['id']}-workspace" not in volumes


def test_generated_name_and_hardened_container(server: LiveServer, api: httpx.Client) -> None:
    box = api.post("/sandboxes").json()
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,38}", box["name"])
    attrs = container_attrs(f"{server.prefix}-{box['id']}")
    # root only for the agent, with just what it needs to drop to the sandbox user
    # (docs/security.md); every program runs as uid 1000 with no capability (below)
    assert attrs["user"] == "0:0"
    assert attrs["cap_drop"] == "[ALL]"
    assert sorted(attrs["cap_add"].strip("[]").split()) == ["SETGID", "SETPCAP", "SETUID"]
    assert "no-new-privileges" in attrs["security_opt"]
    assert int(attrs["pids"]) > 0 and int(attrs["memory"]) > 0 and int(attrs["cpus"]) > 0
    assert "max-size" in attrs["log"] and "max-file" in attrs["log"]
    assert attrs["priv"] == "false"
    assert attrs["mounts"] == "2"  # the workspace volume and the agent-socket directory

    who = api.post(
        f"/sandboxes/{box['id']}/exec",
        json={"command": "id -u; stat -c %U /workspace; grep CapEff /proc/self/status"},
    ).json()
    uid, owner, caps = who["stdout"].splitlines()
    assert uid == "1000" and owner == "sandbox"
    assert caps.split()[-1] == "0000000000000000"
    no_docker = api.post(
        f"/sandboxes/{box['id']}/exec", json={"command": "test -e /var/run/docker.sock"}
    ).json()
    assert no_docker["exit_code"] == 1
    api.delete(f"/sandboxes/{box['id']}")


def test_concurrent_get_or_create_makes_one_container(
    server: LiveServer, api: httpx.Client
) -> None:
    def create() -> httpx.Response:
        with server.client("alice") as client:
            return client.post("/sandboxes", json={"name": "racer"})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: create(), range(6)))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert sorted(r.status_code for r in responses).count(201) == 1
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    sandbox_id = ids.pop()
    assert len([c for c in server.containers()]) >= 1
    names = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout.split()
    assert names.count(f"{server.prefix}-{sandbox_id}") == 1
    ran = api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": ["true"]}).json()
    assert ran["exit_code"] == 0
    api.delete(f"/sandboxes/{sandbox_id}")


def test_sleep_keeps_workspace_and_next_call_wakes(api: httpx.Client) -> None:
    box = api.post("/sandboxes", json={"name": "sleeper"}).json()
    sid = box["id"]
    api.post(f"/sandboxes/{sid}/exec", json={"command": "echo kept > /workspace/note.txt"})
    slept = api.post(f"/sandboxes/{sid}/sleep")
    assert slept.status_code == 200 and slept.json()["status"] == "sleeping"
    assert api.get(f"/sandboxes/{sid}").json()["status"] == "sleeping"
    out = api.post(f"/sandboxes/{sid}/exec", json={"command": "cat /workspace/note.txt"}).json()
    assert out["stdout"] == "kept\n"
    assert api.get(f"/sandboxes/{sid}").json()["status"] == "running"
    api.post(f"/sandboxes/{sid}/sleep")
    woken = api.post(f"/sandboxes/{sid}/wake")
    assert woken.status_code == 200 and woken.json()["status"] == "running"
    api.delete(f"/sandboxes/{sid}")


def test_other_users_sandbox_is_not_found(server: LiveServer, shared_sandbox: dict) -> None:
    with server.client("mallory") as mallory:
        sid = shared_sandbox["id"]
        for method, path, body in [
            ("GET", f"/sandboxes/{sid}", None),
            ("PATCH", f"/sandboxes/{sid}", {"keep_alive": False}),
            ("DELETE", f"/sandboxes/{sid}", None),
            ("POST", f"/sandboxes/{sid}/exec", {"command": "id"}),
            ("POST", f"/sandboxes/{sid}/sleep", None),
            ("POST", f"/sandboxes/{sid}/wake", None),
        ]:
            response = mallory.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        assert sid not in [s["id"] for s in mallory.get("/sandboxes").json()["sandboxes"]]
