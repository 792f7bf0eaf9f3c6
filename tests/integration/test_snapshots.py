"""Snapshots, fork and restore through the API, on the real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_ide import InvalidRequestError, NotFoundError, Sandbox

from tests.server import LiveServer, running_server

CLI = str(Path(sys.executable).parent / "sandbox-ide")

# A package installed as the sandbox user installs one: under ~/.local, on the root
# filesystem (not in /workspace).
INSTALL = (
    "mkdir -p ~/.local/bin && printf '#!/bin/sh\\necho hello from the package\\n' "
    "> ~/.local/bin/hello && chmod +x ~/.local/bin/hello"
)


@pytest.fixture(scope="module")
def snapper(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {
        "SANDBOX_MAX_PER_USER": "3",
        # the orphan sweep runs often and at once: it must leave snapshots alone
        "SANDBOX_ORPHAN_GRACE": "0",
        "SANDBOX_REAP_INTERVAL": "0.2",
    }
    with running_server("sbxsnap", settings) as server:
        yield server


def run(api: httpx.Client, sandbox_id: str, command: str) -> dict[str, object]:
    response = api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return dict(response.json())


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def agent_key(server: LiveServer, sandbox_id: str) -> str:
    env = docker("inspect", "-f", "{{json .Config.Env}}", f"{server.prefix}-{sandbox_id}").stdout
    return next(e for e in env.strip("[]\n").split(",") if "SANDBOX_AGENT_KEY=" in e)


def test_a_snapshot_outlives_its_sandbox_and_starts_new_ones(snapper: LiveServer) -> None:
    with snapper.client("ada") as api:
        box = api.post("/sandboxes", json={"name": "orig", "env": {"SECRET_OF_ORIG": "1"}}).json()
        run(api, box["id"], f"echo kept > /workspace/data.txt && {INSTALL}")

        response = api.post(f"/sandboxes/{box['id']}/snapshots", json={"name": "first"})
        assert response.status_code == 201, response.text
        snap = response.json()
        assert set(snap) == {"id", "name", "sandbox", "size_bytes", "created_at", "paused_ms"}
        assert (snap["name"], snap["sandbox"]) == ("first", box["id"])
        assert snap["size_bytes"] > 0 and snap["paused_ms"] >= 0
        listed = api.get(f"/sandboxes/{box['id']}/snapshots").json()["snapshots"]
        assert [s["id"] for s in listed] == [snap["id"]]
        # the parent runs on after it
        assert run(api, box["id"], "cat /workspace/data.txt")["stdout"] == "kept\n"

        parent_key = agent_key(snapper, box["id"])
        assert api.delete(f"/sandboxes/{box['id']}").status_code == 204
        time.sleep(1.5)  # several passes of the reaper and its orphan sweep
        assert api.get(f"/snapshots/{snap['id']}").json()["id"] == snap["id"]
        assert (
            docker("volume", "inspect", f"{snapper.prefix}-snapshot-{snap['id']}").returncode == 0
        )

        response = api.post("/sandboxes", json={"name": "copy", "snapshot": snap["id"]})
        assert response.status_code == 201, response.text
        copy = response.json()
        out = run(
            api,
            copy["id"],
            "cat /workspace/data.txt; hello; whoami; echo ${SECRET_OF_ORIG:-unset}; "
            "stat -c %U /usr/lib/python3/dist-packages/sandbox_agent/server.py; "
            "test -w /usr/lib/python3/dist-packages/sandbox_agent/server.py || echo ro; "
            "echo more > /workspace/new.txt && echo writable",
        )
        assert out["stdout"] == (
            "kept\nhello from the package\nsandbox\nunset\nroot\nro\nwritable\n"
        ), out
        # its own agent key, never the parent's; the snapshot's image keeps none
        assert agent_key(snapper, copy["id"]) != parent_key
        image = f"{snapper.prefix}-snapshot:{snap['id']}"
        assert (
            'SANDBOX_AGENT_KEY="' in docker("inspect", "-f", "{{json .Config.Env}}", image).stdout
        )

        assert api.delete(f"/snapshots/{snap['id']}").status_code == 204
        assert api.get(f"/snapshots/{snap['id']}").status_code == 404
        assert docker("image", "inspect", image).returncode != 0
        assert docker("volume", "inspect", f"{snapper.prefix}-snapshot-{snap['id']}").returncode
        # a sandbox made from it runs on, with its files; the image goes with the last
        assert run(api, copy["id"], "cat /workspace/data.txt")["stdout"] == "kept\n"
        image_id = docker("inspect", "-f", "{{.Image}}", f"{snapper.prefix}-{copy['id']}").stdout
        assert docker("image", "inspect", image_id.strip()).returncode == 0
        assert api.delete(f"/sandboxes/{copy['id']}").status_code == 204
        assert docker("image", "inspect", image_id.strip()).returncode != 0


def test_fork_starts_independent_copies_and_reports_each_failure(snapper: LiveServer) -> None:
    with snapper.client("forker") as api:
        fence = {"allow": ["203.0.113.0/24", "pypi.org"]}
        parent = api.post(
            "/sandboxes", json={"name": "parent", "env": {"LEVEL": "2"}, "egress": fence}
        ).json()
        run(api, parent["id"], f"echo base > /workspace/f && {INSTALL}")
        # SANDBOX_MAX_PER_USER is 3: the parent and two forks fit, the third does not
        response = api.post(f"/sandboxes/{parent['id']}/fork", json={"count": 3})
        assert response.status_code == 200, response.text
        result = response.json()
        assert len(result["sandboxes"]) == 2
        assert [e["code"] for e in result["errors"]] == ["too_many_sandboxes"]
        assert "SANDBOX_MAX_PER_USER" in result["errors"][0]["message"]
        assert result["snapshot"]["sandbox"] == parent["id"]
        one, two = (s["id"] for s in result["sandboxes"])
        assert len({one, two, parent["id"]}) == 3
        assert [s["egress"] for s in result["sandboxes"]] == [fence, fence]
        run(api, one, "echo changed > /workspace/f")
        for sandbox_id, content in ((one, "changed"), (two, "base"), (parent["id"], "base")):
            out = run(api, sandbox_id, "cat /workspace/f; hello; echo $LEVEL")
            assert out["stdout"] == f"{content}\nhello from the package\n2\n"


def test_restore_rolls_files_and_packages_back_keeping_the_id(snapper: LiveServer) -> None:
    with snapper.client("undo") as api:
        box = api.post("/sandboxes", json={"name": "work"}).json()
        run(api, box["id"], "echo v1 > /workspace/doc")
        snap = api.post(f"/sandboxes/{box['id']}/snapshots", json={}).json()
        run(api, box["id"], f"echo v2 > /workspace/doc && touch /workspace/extra && {INSTALL}")

        response = api.post(f"/sandboxes/{box['id']}/restore", json={"snapshot": snap["id"]})
        assert response.status_code == 200, response.text
        assert response.json()["id"] == box["id"]
        out = run(api, box["id"], "cat /workspace/doc; ls /workspace; command -v hello || echo no")
        assert out["stdout"] == "v1\ndoc\nno\n"


def test_memory_and_out_of_range_counts_are_refused_with_a_sentence(snapper: LiveServer) -> None:
    with snapper.client("picky") as api:
        box = api.post("/sandboxes", json={"name": "m"}).json()
        response = api.post(f"/sandboxes/{box['id']}/snapshots", json={"memory": True})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "memory_snapshot_unsupported"
        assert "CRIU" in error["message"]
        for count in (0, 11):
            response = api.post(f"/sandboxes/{box['id']}/fork", json={"count": count})
            assert response.status_code == 400, response.text
        assert api.get("/snapshots").json()["snapshots"] == []


def test_the_sdk_snapshots_forks_creates_from_and_restores(snapper: LiveServer) -> None:
    conn = {"url": snapper.url, "token": snapper.token("sdk-snap")}
    with Sandbox.create("sdkbox", **conn) as sb:
        sb.exec("echo one > /workspace/f")
        snap = sb.snapshot("one")
        assert (snap.name, snap.sandbox) == ("one", sb.id) and snap.size_bytes > 0
        assert [s.id for s in sb.snapshots()] == [snap.id]
        sb.exec("echo two > /workspace/f")

        result = sb.fork(count=1)
        assert result.errors == [] and result.snapshot.sandbox == sb.id
        with result.sandboxes[0] as copy:
            assert copy.exec("cat /workspace/f").stdout == "two\n"

        with Sandbox.create("fromsnap", snapshot=snap, **conn) as made:
            assert made.exec("cat /workspace/f").stdout == "one\n"

        assert sb.restore(snap).id == sb.id
        assert sb.exec("cat /workspace/f").stdout == "one\n"
        with pytest.raises(InvalidRequestError):
            sb.fork(count=11)
    Sandbox.delete_snapshot(snap, **conn)
    assert snap.id not in {s.id for s in Sandbox.list_snapshots(**conn)}
    with pytest.raises(NotFoundError):
        Sandbox.delete_snapshot(snap.id, **conn)


def test_the_cli_snapshots_forks_and_restores(snapper: LiveServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_IDE")}
    env.update(SANDBOX_IDE_URL=snapper.url, SANDBOX_IDE_TOKEN=snapper.token("cli-snap"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)

    assert cli("create", "clisnap").returncode == 0
    made = cli("snapshot", "create", "clisnap", "--name", "base")
    assert made.returncode == 0, made.stderr
    name, snap_id, _size, paused = made.stdout.strip().split("\t")
    assert name == "base" and paused.startswith("paused ")
    listed = cli("snapshot", "list", "clisnap", "--json")
    assert [s["id"] for s in json.loads(listed.stdout)] == [snap_id]

    forked = cli("fork", "clisnap", "--count", "3")  # SANDBOX_MAX_PER_USER is 3
    assert forked.returncode == 1
    assert len(forked.stdout.strip().splitlines()) == 2
    assert "too_many_sandboxes" in forked.stderr

    restored = cli("restore", "clisnap", snap_id)
    assert restored.returncode == 0 and f"restored from {snap_id}" in restored.stdout
    assert cli("snapshot", "rm", snap_id).stdout.strip() == snap_id
    gone = cli("snapshot", "rm", snap_id)
    assert gone.returncode == 1 and "No snapshot" in gone.stderr
