"""Upgrades: a sandbox made by an older server, whose container runs an agent of
protocol 2, keeps working under this server, and at its next wake is recreated with
the current image on its kept workspace, saying so in ``status_detail``.

The older agent is the real one: the agent's source at the last commit of protocol
2, put into an image on top of the current one (the rest of the image unchanged).
"""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import docker
import pytest

from tests.server import ROOT, running_server

# The last commit whose agent speaks protocol 2.
PROTOCOL_2_COMMIT = "d324ff9"
AGENT_DIR = "/usr/lib/python3/dist-packages/sandbox_agent"


@pytest.fixture(scope="module")
def old_agent_image(sandbox_image: str) -> Iterator[str]:
    """``sandbox-ide:agent2-...``: the current image with the protocol-2 agent."""
    tag = f"{sandbox_image.partition(':')[0]}:agent2-{sandbox_image.partition(':')[2]}"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PROTOCOL_2_COMMIT, "container/agent"],
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as context:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(context, filter="data")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {sandbox_image}\n"
            f"RUN rm -rf {AGENT_DIR}\n"
            f"COPY container/agent {AGENT_DIR}\n"
            f"RUN python3 -m compileall -q --invalidation-mode unchecked-hash {AGENT_DIR}\n"
        )
        engine = docker.from_env()
        engine.images.build(path=context, tag=tag, rm=True)
    try:
        yield tag
    finally:
        with contextlib.suppress(docker.errors.APIError):
            engine.images.remove(tag, force=True)
        engine.close()


def test_an_older_agent_works_then_is_recreated_at_its_next_wake(
    sandbox_image: str, old_agent_image: str
) -> None:
    with running_server("sbxupgrade", {"SANDBOX_IMAGE": old_agent_image}) as server:
        with server.client("upgrader") as api:
            boxes = {
                tier: api.post("/sandboxes", json={"name": f"old-{tier}"}).json()
                for tier in ("stop", "pause")
            }
            for tier, box in boxes.items():
                out = api.post(
                    f"/sandboxes/{box['id']}/exec",
                    json={"command": f"echo kept-{tier} > /workspace/kept.txt; cat kept.txt"},
                )
                assert out.json()["stdout"] == f"kept-{tier}\n", out.text  # protocol 2 works
                slept = api.post(f"/sandboxes/{box['id']}/sleep", json={"tier": tier})
                assert slept.status_code == 200, slept.text

        # The server is upgraded: its image (and agent) is the current one.
        server.env["SANDBOX_IMAGE"] = sandbox_image
        server.restart()
        engine = docker.from_env()
        try:
            with server.client("upgrader") as api:
                for tier, box in boxes.items():
                    out = api.post(f"/sandboxes/{box['id']}/exec", json={"command": "cat kept.txt"})
                    assert out.json()["stdout"] == f"kept-{tier}\n", out.text
                    now = api.get(f"/sandboxes/{box['id']}").json()
                    assert now["status"] == "running"
                    assert now["status_detail"] == (
                        "Recreated with agent protocol 3 (was 2) on its kept workspace."
                    )
                    container = engine.containers.get(f"{server.prefix}-{box['id']}")
                    assert container.image.id == engine.images.get(sandbox_image).id
                    # Only at that wake: the next call leaves it as it is.
                    api.post(f"/sandboxes/{box['id']}/exec", json={"command": "true"})
                    again = api.get(f"/sandboxes/{box['id']}").json()
                    assert again["status_detail"] == now["status_detail"]
        finally:
            engine.close()
