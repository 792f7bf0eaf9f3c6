"""Templates built from a Dockerfile, through the HTTP API, on the real engine.

Every Dockerfile here carries a random marker, so its image tag (a hash of the
inputs) is this run's own; the images built are removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import LiveServer, running_server

GROWTH_LIMIT = "2m"


@pytest.fixture(scope="module")
def bserver(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxbld", {"TEMPLATE_IMAGE_MAX_GROWTH": GROWTH_LIMIT}) as server:
        yield server


@pytest.fixture(scope="module")
def owner(bserver: LiveServer) -> Iterator[httpx.Client]:
    with bserver.client("builder") as client:
        yield client


@pytest.fixture(scope="module")
def built_images() -> Iterator[set[str]]:
    """Tags of images the tests built (removed at the end)."""
    tags: set[str] = set()
    yield tags
    for tag in tags:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


def marker() -> str:
    return secrets.token_hex(4)


def make_template(api: httpx.Client, dockerfile: str, **fields: object) -> dict:
    body = {"name": f"img-{secrets.token_hex(3)}", "dockerfile": dockerfile, **fields}
    return ok(api.post("/templates", json=body), 201)


def start_build(api: httpx.Client, template: dict, images: set[str]) -> dict:
    build = ok(api.post(f"/templates/{template['id']}/build"), 202)
    assert build["status"] in ("queued", "running", "succeeded"), build
    images.add(build["image"])
    return build


def wait_build(api: httpx.Client, build: dict, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = ok(api.get(f"/builds/{build['id']}"))
        if state["status"] in ("succeeded", "failed"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"build {build['id']} did not end")


def sse_events(api: httpx.Client, path: str) -> list[tuple[str, dict]]:
    """All events of an SSE answer, in order, until the server ends it."""
    events: list[tuple[str, dict]] = []
    with api.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    return events


def sh(api: httpx.Client, sandbox: dict, command: str) -> str:
    out = ok(api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command}))
    assert out["exit_code"] == 0, out
    return out["stdout"]


def test_a_dockerfile_builds_streams_its_log_and_sandboxes_get_it(
    owner: httpx.Client, built_images: set[str]
) -> None:
    mark = marker()
    dockerfile = (
        "FROM sandbox\n"
        f"RUN echo installed-{mark} > /opt/lesson-tool \\\n"
        f" && echo step-output-{mark}\n"
        "USER sandbox\n"
        "RUN echo mine > /home/sandbox/made-by-sandbox\n"
    )
    template = make_template(owner, dockerfile)
    assert template["dockerfile"] == dockerfile and template["built_image"] == ""
    # Not built yet: a sandbox from it is refused with the way forward.
    refusal = error(owner.post("/sandboxes", json={"template": template["id"]}), 409)
    assert refusal["code"] == "template_not_built" and "/build" in refusal["message"]

    build = start_build(owner, template, built_images)
    assert build["template"] == template["id"] and build["image"].startswith(
        "sandbox-ide-template:"
    )
    events = sse_events(owner, f"/builds/{build['id']}/logs")
    names = [name for name, _ in events]
    assert names[-1] == "done" and events[-1][1]["status"] == "succeeded", events[-3:]
    log = "".join(data["text"] for name, data in events if name == "log")
    assert f"step-output-{mark}" in log and "Checking that the sandbox agent" in log
    steps = [data for name, data in events if name == "progress"]
    assert steps and steps[-1]["step"] == steps[-1]["steps"] >= 3, steps
    assert any("RUN echo installed" in step["message"] for step in steps), steps

    state = ok(owner.get(f"/builds/{build['id']}"))
    assert state["status"] == "succeeded" and not state["reused"] and state["error"] == ""
    assert ok(owner.get(f"/templates/{template['id']}"))["built_image"] == build["image"]
    listed = ok(owner.get(f"/templates/{template['id']}/builds"))["builds"]
    assert [b["id"] for b in listed] == [build["id"]]

    sandbox = ok(owner.post("/sandboxes", json={"template": template["id"]}), 201)
    try:
        assert sh(owner, sandbox, "cat /opt/lesson-tool") == f"installed-{mark}\n"
        # Programs still run as the sandbox user in /workspace, whatever USER said.
        assert sh(owner, sandbox, "id -un; pwd; cat ~/made-by-sandbox") == (
            "sandbox\n/workspace\nmine\n"
        )
    finally:
        owner.delete(f"/sandboxes/{sandbox['id']}")

    # The same inputs again: the image is reused, not built.
    again = wait_build(owner, start_build(owner, template, built_images))
    assert again["status"] == "succeeded" and again["reused"] is True
    assert again["image"] == build["image"]
    replay = sse_events(owner, f"/builds/{again['id']}/logs")
    assert "built before" in "".join(d["text"] for n, d in replay if n == "log")

    # Deleting the template removes its image (no other template, no container uses it).
    assert owner.delete(f"/templates/{template['id']}").status_code == 204
    gone = subprocess.run(["docker", "image", "inspect", build["image"]], capture_output=True)
    assert gone.returncode != 0, "the deleted template's image was kept"
    assert error(owner.get(f"/builds/{build['id']}"), 404)["code"] == "not_found"


def test_a_failing_step_is_named_with_its_last_lines(
    owner: httpx.Client, built_images: set[str]
) -> None:
    mark = marker()
    template = make_template(
        owner,
        f"FROM sandbox\nRUN echo fine-{mark}\n"
        f"RUN echo first-words && echo last-words-{mark} >&2 && exit 7\n"
        "RUN echo never-run\n",
    )
    state = wait_build(owner, start_build(owner, template, built_images))
    assert state["status"] == "failed", state
    assert state["failed_step"].startswith("Step 3/") and "exit 7" in state["failed_step"]
    assert f"last-words-{mark}" in state["last_lines"] and "first-words" in state["last_lines"]
    assert "non-zero code: 7" in state["error"] and "Step 3/" in state["error"]
    assert ok(owner.get(f"/templates/{template['id']}"))["built_image"] == ""
    events = sse_events(owner, f"/builds/{state['id']}/logs")
    assert events[-1] == ("done", state)
    assert "never-run" not in "".join(d["text"] for n, d in events if n == "log")


@pytest.mark.parametrize(
    ("dockerfile", "code", "words"),
    [
        ("FROM debian:bookworm-slim\nRUN true\n", "dockerfile_base", "FROM sandbox"),
        ("RUN true\n", "dockerfile_base", "FROM sandbox"),
        ("FROM sandbox\nFROM sandbox-ide-base:bookworm\n", "dockerfile_base", "line 2"),
        (
            "FROM sandbox\nCOPY agent.py /usr/lib/python3/dist-packages/sandbox_agent/\n",
            "dockerfile_agent",
            "line 2",
        ),
        (
            "FROM sandbox\nWORKDIR /usr/local\nADD https://example.com/x libexec/\n",
            "dockerfile_agent",
            "sandbox-as-user",
        ),
        ("FROM sandbox\nRUN true\nUSER root\n", "dockerfile_user", "line 3"),
        ("FROM sandbox\nUSER 0:0\n", "dockerfile_user", "root"),
        ('FROM sandbox\nENTRYPOINT ["/bin/sh"]\n', "invalid_dockerfile", "ENTRYPOINT"),
        ("FROM sandbox\n" + "RUN true\n" * 9000, "dockerfile_too_large", "bytes"),
    ],
)
def test_unsafe_dockerfiles_are_refused_with_a_sentence(
    owner: httpx.Client, dockerfile: str, code: str, words: str
) -> None:
    body = {"name": f"bad-{secrets.token_hex(3)}", "dockerfile": dockerfile}
    refused = error(owner.post("/templates", json=body), 400)
    assert refused["code"] == code and words in refused["message"], refused
    template = make_template(owner, "")
    refused = error(owner.patch(f"/templates/{template['id']}", json=body), 400)
    assert refused["code"] == code, refused
    # Without a Dockerfile there is nothing to build.
    assert error(owner.post(f"/templates/{template['id']}/build"), 400)["code"] == "no_dockerfile"


def test_a_dockerfile_always_builds_on_the_sandbox_image(
    owner: httpx.Client, sandbox_image: str
) -> None:
    body = {"name": f"both-{secrets.token_hex(3)}", "dockerfile": "FROM sandbox\nRUN true\n"}
    refused = error(owner.post("/templates", json={**body, "image": sandbox_image}), 400)
    assert refused["code"] == "invalid_image" and "leave image empty" in refused["message"]
    with_image = make_template(owner, "", image=sandbox_image)
    refused = error(owner.patch(f"/templates/{with_image['id']}", json=body), 400)
    assert refused["code"] == "invalid_image"


def test_an_image_that_grows_too_much_is_refused(
    owner: httpx.Client, built_images: set[str]
) -> None:
    template = make_template(
        owner, f"FROM sandbox\nRUN head -c 5000000 /dev/urandom > /opt/big-{marker()}\n"
    )
    state = wait_build(owner, start_build(owner, template, built_images))
    assert state["status"] == "failed" and "TEMPLATE_IMAGE_MAX_GROWTH" in state["error"], state
    gone = subprocess.run(["docker", "image", "inspect", state["image"]], capture_output=True)
    assert gone.returncode != 0


def test_the_sdk_and_cli_build_with_the_log(
    bserver: LiveServer, built_images: set[str], tmp_path: Path
) -> None:
    from sandbox_ide import Template

    token = bserver.token("builder")
    mark = marker()
    lines: list[str] = []
    with Template.create(
        f"sdk-{mark}",
        dockerfile=f"FROM sandbox\nRUN echo sdk-{mark} > /opt/sdk\n",
        url=bserver.url,
        token=token,
    ) as template:
        build = template.build(on_log=lines.append)
        built_images.add(build.image)
        assert build.ok and build.image == template.info.built_image, build
        assert f"Step 2/2 : RUN echo sdk-{mark}" in "".join(lines)
        assert [b.id for b in template.builds()] == [build.id]

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM sandbox\nRUN echo cli-{mark} && exit 5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_IDE")}
    env.update(SANDBOX_IDE_URL=bserver.url, SANDBOX_IDE_TOKEN=token)
    cli = [str(Path(sys.executable).parent / "sandbox-ide")]
    out = subprocess.run(
        [*cli, "template", "create", f"cli-{mark}", "--dockerfile", str(dockerfile)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out
    assert f"cli-{mark}" in out.stdout and "Step 2/2" in out.stdout
    assert "non-zero code: 5" in out.stderr


def test_a_build_whose_server_stopped_is_failed_when_read(
    bserver: LiveServer, owner: httpx.Client
) -> None:
    template = make_template(owner, f"FROM sandbox\nRUN echo {marker()}\n")
    # A build row another server process left running, untouched for two minutes.
    code = (
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from sandboxes.models import TemplateBuild\n"
        f"b = TemplateBuild.objects.create(template_id={template['id']!r}, status='running')\n"
        "TemplateBuild.objects.filter(pk=b.pk).update("
        "updated_at=timezone.now() - timedelta(seconds=120))\n"
        "print(b.pk)\n"
    )
    build_id = bserver.manage("shell", "-c", code).strip().splitlines()[-1]
    state = ok(owner.get(f"/builds/{build_id}"))
    assert state["status"] == "failed" and "server stopped" in state["error"], state
    events = sse_events(owner, f"/builds/{build_id}/logs")
    assert events == [("done", state)]
