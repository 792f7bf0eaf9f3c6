"""Snapshots belong to their owner and are bounded.

A snapshot holds a sandbox's files, so it is as private as the sandbox: another
user gets 404 for it on every route (reading, deleting, starting a sandbox from it,
restoring it), exactly as for a snapshot that does not exist, and no route puts one
user's files into another user's sandbox. Ids and names are checked before use.
What a user's snapshots occupy together is capped (SANDBOX_SNAPSHOT_QUOTA): past it
the snapshot is refused with 429 and nothing of it is left behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.server import LiveServer, running_server

QUOTA_MB = 40


@pytest.fixture(scope="module")
def guarded(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxsnapsec", {"SANDBOX_SNAPSHOT_QUOTA": f"{QUOTA_MB}m"}) as server:
        yield server


def not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_another_users_snapshot_is_not_found_on_every_route(guarded: LiveServer) -> None:
    with guarded.client("alice") as alice, guarded.client("mallory") as mallory:
        box = alice.post("/sandboxes", json={"name": "private"}).json()
        alice.post(f"/sandboxes/{box['id']}/exec", json={"command": "echo s3cret > /workspace/k"})
        snap = alice.post(f"/sandboxes/{box['id']}/snapshots", json={"name": "mine"}).json()
        theirs = mallory.post("/sandboxes", json={"name": "theirs"}).json()

        not_found(mallory.get(f"/snapshots/{snap['id']}"))
        not_found(mallory.delete(f"/snapshots/{snap['id']}"))
        not_found(mallory.get(f"/sandboxes/{box['id']}/snapshots"))
        not_found(mallory.post(f"/sandboxes/{box['id']}/snapshots", json={}))
        not_found(mallory.post(f"/sandboxes/{box['id']}/fork", json={"count": 1}))
        not_found(mallory.post("/sandboxes", json={"name": "steal", "snapshot": snap["id"]}))
        not_found(mallory.post(f"/sandboxes/{theirs['id']}/restore", json={"snapshot": snap["id"]}))
        # nor can the owner push her files into somebody else's sandbox
        not_found(alice.post(f"/sandboxes/{theirs['id']}/restore", json={"snapshot": snap["id"]}))
        assert mallory.get("/snapshots").json()["snapshots"] == []
        assert [s["name"] for s in mallory.get("/sandboxes").json()["sandboxes"]] == ["theirs"]
        out = mallory.post(
            f"/sandboxes/{theirs['id']}/exec", json={"command": "ls /workspace"}
        ).json()
        assert "k" not in out["stdout"].split()
        # still there for its owner
        assert alice.get(f"/snapshots/{snap['id']}").status_code == 200


def test_snapshot_ids_and_names_are_validated(guarded: LiveServer) -> None:
    with guarded.client("carol") as api:
        box = api.post("/sandboxes", json={"name": "v"}).json()
        for bad in ("../../etc", "ABCDEFGHIJKL", "x" * 200, "", 7):
            response = api.post("/sandboxes", json={"name": "from", "snapshot": bad})
            assert response.status_code == 400, (bad, response.text)
            response = api.post(f"/sandboxes/{box['id']}/restore", json={"snapshot": bad})
            assert response.status_code == 400, (bad, response.text)
        for bad_name in ("Has Spaces", "../up", "-lead", "n" * 40, 3):
            response = api.post(f"/sandboxes/{box['id']}/snapshots", json={"name": bad_name})
            assert response.status_code == 400, (bad_name, response.text)
        not_found(api.get("/snapshots/..%2F..%2Fetc"))
        not_found(api.delete("/snapshots/aaaaaaaaaaaa"))
        assert api.get("/snapshots").json()["snapshots"] == []


def test_snapshots_past_the_quota_are_refused_and_leave_nothing(guarded: LiveServer) -> None:
    with guarded.client("hoarder") as api:
        box = api.post("/sandboxes", json={"name": "big"}).json()
        first = api.post(f"/sandboxes/{box['id']}/snapshots", json={})
        assert first.status_code == 201, first.text
        api.post(
            f"/sandboxes/{box['id']}/exec",
            json={"command": f"head -c {QUOTA_MB + 5}M /dev/urandom > /workspace/blob"},
        )
        before = engine_objects(guarded)
        response = api.post(f"/sandboxes/{box['id']}/snapshots", json={"name": "toomuch"})
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "snapshot_quota_exceeded"
        assert "SANDBOX_SNAPSHOT_QUOTA" in error["message"]
        assert [s["id"] for s in api.get("/snapshots").json()["snapshots"]] == [first.json()["id"]]
        fork = api.post(f"/sandboxes/{box['id']}/fork", json={"count": 1})
        assert fork.status_code == 429, fork.text
        assert engine_objects(guarded) == before


def engine_objects(server: LiveServer) -> set[str]:
    """The server's images and volumes (snapshots' among them) and containers."""
    found: set[str] = set()
    for kind in ("image", "volume", "container"):
        found.update(
            subprocess.run(
                ["docker", kind, "ls", "-aq" if kind != "volume" else "-q"]
                + ["--filter", f"label=sandbox-ide.prefix={server.prefix}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
        )
    return found
