"""Template image builds: what a build job costs beyond the engine's own build.

Measured in one run on one server: a Dockerfile with one small ``RUN`` built
through the API (``POST /templates/{id}/build`` until ``GET /builds/{id}`` says
succeeded: queueing, the engine's build, the check of the agent and the image's
size), the same Dockerfile again (the image is reused), and as the baseline the
same steps built by ``docker build`` directly. The post-build check is also timed
alone (reading the checked paths of the sandbox image from an unstarted container).
"""

from __future__ import annotations

import secrets
import statistics
import subprocess
import time
from typing import Any

from tests.server import LiveServer

ROUNDS = 5


def _wait(api: Any, build_id: str) -> dict[str, Any]:
    while True:
        state = api.get(f"/builds/{build_id}").json()
        if state["status"] in ("succeeded", "failed"):
            return dict(state)
        time.sleep(0.05)


def bench_builds(server: LiveServer, image: str) -> dict[str, Any]:
    fresh: list[float] = []
    reused: list[float] = []
    baseline: list[float] = []
    made: list[str] = []
    try:
        with server.client("bench-builds") as api:
            for _ in range(ROUNDS):
                mark = secrets.token_hex(4)
                template = api.post(
                    "/templates",
                    json={
                        "name": f"bench-{mark}",
                        "dockerfile": f"FROM sandbox\nRUN echo {mark} > /opt/bench\n",
                    },
                ).json()
                for times in (fresh, reused):
                    started = time.perf_counter()
                    build = api.post(f"/templates/{template['id']}/build").json()
                    state = _wait(api, build["id"])
                    times.append(time.perf_counter() - started)
                    assert state["status"] == "succeeded", state
                made.append(state["image"])
                tag = f"sandbox-ide-bench:{mark}"
                started = time.perf_counter()
                subprocess.run(
                    ["docker", "build", "-q", "-t", tag, "-"],
                    input=f"FROM {image}\nRUN echo {mark}-base > /opt/bench\n",
                    text=True,
                    check=True,
                    capture_output=True,
                )
                baseline.append(time.perf_counter() - started)
                made.append(tag)
        code = (
            "import time, docker\n"
            "from sandboxes.templates.builds import fingerprint\n"
            "client = docker.from_env()\n"
            "for _ in range(3):\n"
            "    started = time.perf_counter()\n"
            f"    fingerprint(client, {image!r})\n"
            "    print('took', time.perf_counter() - started)\n"
        )
        out = server.manage("shell", "-c", code)
        check = [float(line.split()[1]) for line in out.splitlines() if line.startswith("took ")]
    finally:
        for tag in made:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    return {
        "build job, one RUN (s, median)": statistics.median(fresh),
        "docker build, same steps (s, median; baseline)": statistics.median(baseline),
        "same Dockerfile again, reused (s, median)": statistics.median(reused),
        "post-build check alone (s, median)": statistics.median(check),
        "rounds": ROUNDS,
    }
