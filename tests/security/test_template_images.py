"""A template's Dockerfile may add to the sandbox image, never take over its agent.

The text checks refuse the obvious ways (tests/integration/test_template_builds.py);
here a ``RUN`` step, which runs as root in the image and passes every text rule,
tries to change what the agent is or runs on. The check after the build compares
the built image with the sandbox image without running either, fails the build and
removes the image. Builds are their template owner's: anyone else gets 404; one
owner runs two at once, and a build that never ends is stopped, its step's
container removed, so nobody holds the server's builders.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration import test_isolation
from tests.integration.test_template_builds import (
    error,
    make_template,
    marker,
    ok,
    sse_events,
    start_build,
    wait_build,
)
from tests.server import LiveServer, running_server

AGENT = "/usr/lib/python3/dist-packages/sandbox_agent"
TIMEOUT = 15


@pytest.fixture(scope="module")
def server(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxbldsec", {"TEMPLATE_BUILD_TIMEOUT": str(TIMEOUT)}) as server:
        yield server


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client("imgowner") as client:
        yield client


@pytest.fixture(scope="module")
def images() -> Iterator[set[str]]:
    tags: set[str] = set()
    yield tags
    for tag in tags:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


@pytest.mark.parametrize(
    ("step", "named"),
    [
        (f"echo 'import os' >> {AGENT}/__main__.py", AGENT),
        ("cp /bin/true /usr/local/libexec/sandbox-as-user", "/usr/local/libexec/sandbox-as-user"),
        ("chmod 0777 /run/sandbox-agent", "/run/sandbox-agent"),
        ("echo /tmp/evil.so > /etc/ld.so.preload", "/etc/ld.so.preload"),
        ("echo 'print(1)' >> /usr/lib/python3.11/json/__init__.py", "/usr/lib/python3.11"),
        ("ln -sf /bin/true /usr/bin/tini", "/usr/bin/tini"),
    ],
)
def test_a_run_step_that_changes_the_agent_fails_the_build(
    owner: httpx.Client, images: set[str], step: str, named: str
) -> None:
    template = make_template(owner, f"FROM sandbox\nRUN : {marker()} && {step}\n")
    state = wait_build(owner, start_build(owner, template, images))
    assert state["status"] == "failed", state
    assert "sandbox agent" in state["error"] and named in state["error"], state
    # The steps all ran: it is the check after them that failed, not a step.
    assert state["failed_step"] == "" and state["last_lines"] == []
    gone = subprocess.run(["docker", "image", "inspect", state["image"]], capture_output=True)
    assert gone.returncode != 0, "the refused image was kept"
    assert ok(owner.get(f"/templates/{template['id']}"))["built_image"] == ""
    refusal = error(owner.post("/sandboxes", json={"template": template["id"]}), 409)
    assert refusal["code"] == "template_not_built"


def test_preloading_code_through_the_environment_fails_the_build(
    owner: httpx.Client, images: set[str]
) -> None:
    template = make_template(
        owner, f"FROM sandbox\nENV LD_PRELOAD=/opt/hook-{marker()}.so PYTHONHOME=/opt\n"
    )
    state = wait_build(owner, start_build(owner, template, images))
    assert state["status"] == "failed" and "config:Env" in state["error"], state


def test_builds_are_their_owners_alone(
    server: LiveServer, owner: httpx.Client, images: set[str]
) -> None:
    template = make_template(owner, f"FROM sandbox\nRUN echo {marker()} > /opt/mine\n")
    build = start_build(owner, template, images)
    with server.client("stranger") as stranger:
        for response in (
            stranger.get(f"/builds/{build['id']}"),
            stranger.get(f"/builds/{build['id']}/logs", headers={"Accept": "text/event-stream"}),
            stranger.post(f"/templates/{template['id']}/build"),
            stranger.get(f"/templates/{template['id']}/builds"),
        ):
            assert error(response, 404)["code"] == "not_found"
        assert error(stranger.get("/builds/nosuchbuild"), 404)["code"] == "not_found"
    assert wait_build(owner, build)["status"] == "succeeded"


def test_one_owner_may_run_only_a_few_builds_at_once(owner: httpx.Client, images: set[str]) -> None:
    slow = [
        make_template(owner, f"FROM sandbox\nRUN sleep 3 && echo {marker()}\n") for _ in range(3)
    ]
    started = [start_build(owner, template, images) for template in slow[:2]]
    refused = error(owner.post(f"/templates/{slow[2]['id']}/build"), 429)
    assert refused["code"] == "too_many_builds" and "at once" in refused["message"]
    for build in started:
        assert wait_build(owner, build)["status"] == "succeeded"
    images.add(wait_build(owner, start_build(owner, slow[2], images))["image"])


def test_a_build_that_never_ends_is_stopped(owner: httpx.Client, images: set[str]) -> None:
    mark = marker()
    template = make_template(owner, f"FROM sandbox\nRUN echo {mark} && sleep 3600\n")
    started = time.monotonic()
    state = wait_build(owner, start_build(owner, template, images))
    assert state["status"] == "failed" and "TEMPLATE_BUILD_TIMEOUT" in state["error"], state
    assert "sleep 3600" in state["error"] and time.monotonic() - started < TIMEOUT + 20
    # The engine cancelled the step: its container is gone.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        running = subprocess.run(
            ["docker", "ps", "-q", "--filter", "status=running"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        commands = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Cmd}}", *running],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if mark not in commands:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the stopped build's step still runs")


host_listener = test_isolation.host_listener  # the fixture: a service on every host address

PROBE = (
    'python3 -c "import socket, subprocess, sys; '
    "gateway = subprocess.run(['ip', '-4', 'route', 'show', 'default'], capture_output=True,"
    " text=True).stdout.split()[2]; "
    "s = socket.socket(); s.settimeout(3); "
    "print('host-' + ('reached' if s.connect_ex((gateway, int(sys.argv[1]))) == 0 else 'blocked'))"
    '" {port}'
)


def test_a_run_step_cannot_reach_the_host(
    owner: httpx.Client, images: set[str], host_listener: int
) -> None:
    """Build steps are the template owner's code: like a sandbox, they reach nothing
    on the host (here a service listening on every host address, at the gateway)."""
    template = make_template(
        owner, f"FROM sandbox\nRUN : {marker()} && {PROBE.format(port=host_listener)}\n"
    )
    state = wait_build(owner, start_build(owner, template, images))
    assert state["status"] == "succeeded", state
    log = "".join(
        d["text"] for n, d in sse_events(owner, f"/builds/{state['id']}/logs") if n == "log"
    )
    assert "host-blocked" in log and "host-reached" not in log, log
