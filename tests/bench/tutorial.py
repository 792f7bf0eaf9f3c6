"""Guided tutorials: what a learner waits for.

A check (POST .../tutorial/check) runs the step's verify script through the exec
service; its baseline is the same script run with POST .../exec on the same
sandbox, so the difference is what the tutorial adds (reading the scenario, the
progress row). Loading the tutorial and a step is compared with reading the
sandbox (GET /sandboxes/{id}), the cheapest authorised read.
"""

from __future__ import annotations

from typing import Any

from tests.bench.foundation import median_ms
from tests.integration.test_tutorials import SAMPLE, sample_files, upload
from tests.server import LiveServer

RUNS = 30


def bench_tutorial(server: LiveServer) -> dict[str, Any]:
    with server.client("bench-teacher") as teacher, server.client("bench-learner") as learner:
        template = teacher.post("/templates", json={"name": "bench-tutorial"})
        template.raise_for_status()
        upload(teacher, template.json()["id"], sample_files())
        course = teacher.post(
            "/courses", json={"name": "bench tutorial", "template": template.json()["id"]}
        )
        course.raise_for_status()
        invite = teacher.post(f"/courses/{course.json()['id']}/invites", json={})
        invite.raise_for_status()
        joined = learner.post(f"/invites/{invite.json()['token']}/join")
        joined.raise_for_status()
        sid = joined.json()["sandbox"]
        base = f"/sandboxes/{sid}"
        learner.get(f"{base}/tutorial").raise_for_status()
        learner.post(f"{base}/exec", json={"command": "echo hello > /workspace/greeting.txt"})
        learner.post(f"{base}/tutorial/check").raise_for_status()  # now on step 2
        verify = (SAMPLE / "step1" / "verify.sh").read_text()

        def check() -> None:
            response = learner.post(f"{base}/tutorial/check", json={"step": 1})
            response.raise_for_status()
            assert response.json()["passed"]

        def exec_same() -> None:
            response = learner.post(f"{base}/exec", json={"command": ["bash", "-c", verify]})
            response.raise_for_status()
            assert response.json()["exit_code"] == 0

        return {
            "check_ms_median": median_ms(check, RUNS),
            "exec_same_script_ms_median (baseline)": median_ms(exec_same, RUNS),
            "get_tutorial_ms_median": median_ms(lambda: learner.get(f"{base}/tutorial"), RUNS),
            "get_step_ms_median": median_ms(lambda: learner.get(f"{base}/tutorial/steps/1"), RUNS),
            "get_sandbox_ms_median (baseline)": median_ms(lambda: learner.get(base), RUNS),
            "roster_ms_median": median_ms(
                lambda: teacher.get(f"/courses/{course.json()['id']}/students"), RUNS
            ),
        }
