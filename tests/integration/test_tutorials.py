"""Guided tutorials through the API against real sandboxes: the sample tutorial
(tests/tutorials/sample) read from a course's starter, checks that run its verify
scripts in the student's sandbox, progress that survives and is reset with the
workspace, the teacher's progress view and CSV, authoring checks, and bad input
(broken JSON, a missing step file, a verify script that hangs or prints megabytes).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_ide import Course, Sandbox

from tests.integration.test_classroom import Class, join, read, sh
from tests.server import LiveServer, running_server

SAMPLE = Path(__file__).resolve().parent.parent / "tutorials" / "sample"


def sample_files() -> dict[str, bytes]:
    return {
        p.relative_to(SAMPLE).as_posix(): p.read_bytes()
        for p in sorted(SAMPLE.rglob("*"))
        if p.is_file()
    }


def upload(api: httpx.Client, template_id: str, files: dict[str, bytes]) -> None:
    response = api.put(
        f"/templates/{template_id}/files",
        files=[(path, (path.rsplit("/", 1)[-1], content)) for path, content in files.items()],
    )
    assert response.status_code == 200, response.text


def tutorial_class(server: LiveServer, teacher: str, name: str, files: dict[str, bytes]) -> Class:
    api = server.client(teacher)
    template = api.post("/templates", json={"name": name})
    assert template.status_code == 201, template.text
    upload(api, template.json()["id"], files)
    course = api.post(
        "/courses", json={"name": f"{name} course", "template": template.json()["id"]}
    )
    assert course.status_code == 201, course.text
    invite = api.post(f"/courses/{course.json()['id']}/invites", json={})
    assert invite.status_code == 201, invite.text
    return Class(api, course.json(), template.json(), invite.json())


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {
        "CLASSROOM_WARM_POOL": "0",
        "TEMPLATE_REPO_ALLOW_LOCAL": "1",
        "TUTORIAL_VERIFY_TIMEOUT": "3",
        "TUTORIAL_OUTPUT_LIMIT": "4k",
    }
    with running_server("sbxtut", settings) as server:
        yield server


@pytest.fixture(scope="module")
def klass(school: LiveServer) -> Class:
    return tutorial_class(school, "teacher-tut", "shell101", sample_files())


@pytest.fixture(scope="module")
def students(school: LiveServer, klass: Class) -> dict[str, str]:
    out = {}
    for name in ("learner-a", "learner-b"):
        response = join(school, name, klass.invite["token"])
        assert response.status_code == 201, response.text
        out[name] = response.json()["sandbox"]
    return out


def test_a_learner_goes_through_the_sample(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    a = school.client("learner-a")
    sid = students["learner-a"]
    tutorial = a.get(f"/sandboxes/{sid}/tutorial")
    assert tutorial.status_code == 200, tutorial.text
    body = tutorial.json()
    assert body["title"] == "Shell basics"
    assert [(s["index"], s["title"], s["done"]) for s in body["steps"]] == [
        (1, "Write a greeting", False),
        (2, "Say it louder", False),
        (3, "Use the helper", False),
    ]
    assert body["current"] == 1 and body["unsupported"] == []

    # Starting it copied the assets and ran the intro's background script.
    wait_for(lambda: sh(a, sid, "cat /tmp/tutorial-intro.txt")["exit_code"] == 0)
    assert sh(a, sid, "test -x ~/bin/count-lines.sh")["exit_code"] == 0

    intro = a.get(f"/sandboxes/{sid}/tutorial/steps/0").json()
    assert intro["kind"] == "intro" and "Welcome" in intro["markdown"]
    step = a.get(f"/sandboxes/{sid}/tutorial/steps/1").json()
    assert step["actions"] == [
        {"index": 0, "kind": "exec", "code": "echo hello > greeting.txt", "interrupt": False}
    ]
    assert step["verify"] is True
    image = f"/api/v1/sandboxes/{sid}/tutorial/files/images/steps.png"
    assert image in step["markdown"]
    png = a.get(image.removeprefix("/api/v1"))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (SAMPLE / "images/steps.png").read_bytes()
    assert error(a.get(f"/sandboxes/{sid}/tutorial/steps/2"), 409)["code"] == "step_locked"
    assert error(a.get(f"/sandboxes/{sid}/tutorial/steps/9"), 404)["code"] == "not_found"

    # A failing check says why and does not move on.
    failed = a.post(f"/sandboxes/{sid}/tutorial/check")
    assert failed.status_code == 200, failed.text
    assert failed.json()["passed"] is False
    assert "greeting.txt is missing" in failed.json()["output"]
    assert failed.json()["step"] == 1 and failed.json()["current"] == 1

    assert sh(a, sid, "cd /workspace && echo hello > greeting.txt")["exit_code"] == 0
    passed = a.post(f"/sandboxes/{sid}/tutorial/check").json()
    assert passed["passed"] is True and passed["step"] == 1 and passed["current"] == 2

    sh(a, sid, "cd /workspace && tr a-z A-Z < greeting.txt > loud.txt")
    assert a.post(f"/sandboxes/{sid}/tutorial/check").json()["current"] == 3
    # Opening step 3 ran its background script.
    wait_for(lambda: sh(a, sid, "test -f /tmp/step3-ready")["exit_code"] == 0)
    step3 = a.get(f"/sandboxes/{sid}/tutorial/steps/3").json()
    assert step3["foreground"].startswith("#!/bin/bash")

    # Progress survives: a new client (a page reload) sees the same.
    again = school.client("learner-a").get(f"/sandboxes/{sid}/tutorial").json()
    assert [s["done"] for s in again["steps"]] == [True, True, False]
    assert again["current"] == 3
    assert again["last_check"]["step"] == 2 and again["last_check"]["passed"] is True

    # The teacher sees the same.
    view = klass.teacher.get(f"/sandboxes/{sid}/tutorial")
    assert view.status_code == 200 and view.json()["current"] == 3

    sh(a, sid, "cd /workspace && ~/bin/count-lines.sh greeting.txt loud.txt > count.txt")
    done = a.post(f"/sandboxes/{sid}/tutorial/check").json()
    assert done["passed"] is True and done["finished"] is True and done["current"] == 4
    finish = a.get(f"/sandboxes/{sid}/tutorial/steps/4").json()
    assert finish["kind"] == "finish" and "Well done" in finish["markdown"]
    assert error(a.post(f"/sandboxes/{sid}/tutorial/check"), 409)["code"] == "tutorial_finished"


def test_the_teacher_sees_progress_live_and_as_csv(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    b = school.client("learner-b")
    sid = students["learner-b"]
    assert b.get(f"/sandboxes/{sid}/tutorial").status_code == 200
    assert b.post(f"/sandboxes/{sid}/tutorial/check").json()["passed"] is False
    course = klass.course["id"]
    roster = klass.teacher.get(f"/courses/{course}/students").json()["students"]
    row = next(r for r in roster if r["student"]["username"] == "learner-b")
    assert row["tutorial"]["current"] == 1 and row["tutorial"]["total"] == 3
    assert row["tutorial"]["last_check"]["passed"] is False

    progress = klass.teacher.get(f"/courses/{course}/progress")
    assert progress.status_code == 200, progress.text
    by_name = {r["student"]["username"]: r for r in progress.json()["students"]}
    assert by_name["learner-b"]["current"] == 1
    assert by_name["learner-b"]["steps"][0]["failed_checks"] == 1

    exported = klass.teacher.get(f"/courses/{course}/progress", params={"format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    line = next(r for r in rows if r["student"] == "learner-b")
    assert line["step"] == "1" and line["of"] == "3" and line["last_check_passed"] == "no"


def test_reset_starts_the_tutorial_over(school: LiveServer) -> None:
    k = tutorial_class(school, "teacher-tut-r", "shellreset", sample_files())
    joined = join(school, "learner-r", k.invite["token"])
    assert joined.status_code == 201, joined.text
    sid = joined.json()["sandbox"]
    r = school.client("learner-r")
    sh(r, sid, "cd /workspace && echo hello > greeting.txt")
    assert r.post(f"/sandboxes/{sid}/tutorial/check").json()["current"] == 2
    student_id = k.teacher.get(f"/courses/{k.course['id']}/students").json()["students"][0][
        "student"
    ]["id"]
    reset = k.teacher.post(f"/courses/{k.course['id']}/students/{student_id}/reset")
    assert reset.status_code == 200, reset.text
    after = r.get(f"/sandboxes/{sid}/tutorial").json()
    assert after["current"] == 1 and after["last_check"] is None
    assert not any(s["done"] for s in after["steps"])
    assert read(r, sid, "/workspace/greeting.txt").status_code == 404


def test_authoring_validate_and_preview(school: LiveServer, klass: Class) -> None:
    template = klass.template["id"]
    checked = klass.teacher.get(f"/templates/{template}/tutorial/validate").json()
    # Uploaded files are not executable in git: a warning, not an error.
    assert checked["found"] is True and checked["valid"] is True and checked["steps"] == 3
    assert {p["file"] for p in checked["problems"]} == {
        "step1/verify.sh",
        "step2/verify.sh",
        "step3/verify.sh",
    }
    assert all(p["level"] == "warning" and p["line"] == 1 for p in checked["problems"])
    preview = klass.teacher.get(f"/templates/{template}/tutorial/preview").json()
    assert [p["kind"] for p in preview["pages"]] == ["intro", "step", "step", "step", "finish"]
    assert (
        f"/api/v1/templates/{template}/tutorial/files/images/steps.png"
        in preview["pages"][1]["markdown"]
    )
    png = klass.teacher.get(f"/templates/{template}/tutorial/files/images/steps.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    # Only images are served from the tutorial's folder.
    script = klass.teacher.get(f"/templates/{template}/tutorial/files/step1/verify.sh")
    assert error(script, 404)["code"] == "not_found"


def test_a_tutorial_from_a_repository(school: LiveServer, tmp_path: Path) -> None:
    """A scenario kept in git keeps its executable verify scripts: no warnings."""
    repo = tmp_path / "scenario"
    shutil.copytree(SAMPLE, repo)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "s"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    teacher = school.client("teacher-tut-repo")
    made = teacher.post("/templates", json={"name": "fromrepo", "repo_url": f"file://{repo}"})
    assert made.status_code == 201, made.text
    checked = teacher.get(f"/templates/{made.json()['id']}/tutorial/validate").json()
    assert checked["valid"] is True and checked["problems"] == [] and checked["steps"] == 3


def test_broken_tutorials_are_reported_with_file_and_line(school: LiveServer) -> None:
    teacher = school.client("teacher-tut-bad")
    files = sample_files()
    index = files["index.json"].decode().replace('"steps": [', '"steps": [,', 1)
    broken = tutorial_class(
        school, "teacher-tut-bad", "brokenjson", {**files, "index.json": index.encode()}
    )
    checked = teacher.get(f"/templates/{broken.template['id']}/tutorial/validate").json()
    assert checked["valid"] is False
    line = next(i for i, text in enumerate(index.splitlines(), 1) if '"steps": [,' in text)
    assert [(p["file"], p["line"]) for p in checked["problems"]] == [("index.json", line)]
    assert "not valid JSON" in checked["problems"][0]["message"]

    missing = dict(files)
    del missing["step2/text.md"]
    k = tutorial_class(school, "teacher-tut-bad", "missingstep", missing)
    checked = teacher.get(f"/templates/{k.template['id']}/tutorial/validate").json()
    errors = [p for p in checked["problems"] if p["level"] == "error"]
    assert len(errors) == 1 and "step2/text.md" in errors[0]["message"]
    assert "step2/text.md" in index.splitlines()[errors[0]["line"] - 1]
    # A student of such a course is told so when the tutorial is loaded.
    joined = join(school, "learner-bad", k.invite["token"])
    assert joined.status_code == 201, joined.text
    loaded = school.client("learner-bad").get(f"/sandboxes/{joined.json()['sandbox']}/tutorial")
    assert error(loaded, 400)["code"] == "tutorial_invalid"
    assert "step2/text.md" in loaded.json()["error"]["message"]


def one_step(verify: str) -> dict[str, bytes]:
    index = {
        "title": "One step",
        "details": {"steps": [{"title": "Only", "text": "step.md", "verify": "verify.sh"}]},
        "backend": {"imageid": "kubernetes-kubeadm-1node"},
    }
    return {
        "index.json": json.dumps(index).encode(),
        "step.md": b"# Only\n",
        "verify.sh": verify.encode(),
    }


def test_verify_scripts_that_hang_or_flood_are_bounded(school: LiveServer) -> None:
    teacher = school.client("teacher-tut-bad")
    for name, verify in (
        ("hangs", "sleep 600\n"),
        ("floods", "head -c 5000000 /dev/zero | tr '\\0' x\nexit 1\n"),
    ):
        k = tutorial_class(school, "teacher-tut-bad", name, one_step(verify))
        joined = join(school, f"learner-{name}", k.invite["token"])
        assert joined.status_code == 201, joined.text
        sid = joined.json()["sandbox"]
        learner = school.client(f"learner-{name}")
        loaded = learner.get(f"/sandboxes/{sid}/tutorial").json()
        # What the scenario asks that we cannot give is named.
        assert "backend image 'kubernetes-kubeadm-1node'" in loaded["unsupported"]
        started = time.monotonic()
        result = learner.post(f"/sandboxes/{sid}/tutorial/check")
        assert result.status_code == 200, result.text
        body = result.json()
        assert body["passed"] is False and body["current"] == 1
        if name == "hangs":
            assert time.monotonic() - started < 30
            assert "did not finish within 3 seconds" in body["output"]
        else:
            assert len(body["output"]) < 5000
            assert "more bytes of output not shown" in body["output"]
    del teacher


def cli(server: LiveServer, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_IDE")}
    env.update(SANDBOX_IDE_URL=server.url, SANDBOX_IDE_TOKEN=server.token(user))
    return subprocess.run(
        [str(Path(sys.executable).parent / "sandbox-ide"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_sdk_and_cli_follow(school: LiveServer) -> None:
    k = tutorial_class(school, "teacher-tut-sdk", "shellsdk", sample_files())
    joined = join(school, "learner-sdk", k.invite["token"])
    assert joined.status_code == 201, joined.text
    sid = joined.json()["sandbox"]
    with Sandbox.connect(sid, url=school.url, token=school.token("learner-sdk")) as sb:
        info = sb.tutorial.get()
        assert info.title == "Shell basics" and info.current == 1 and len(info.steps) == 3
        assert sb.tutorial.step(1).actions[0]["code"] == "echo hello > greeting.txt"
        failed = sb.tutorial.check()
        assert not failed.passed and "greeting.txt is missing" in failed.output
        shown = cli(school, "learner-sdk", "tutorial", "show", sb.name)
        assert shown.returncode == 0, shown.stderr
        assert "[>] 1. Write a greeting" in shown.stdout
        check = cli(school, "learner-sdk", "tutorial", "check", sb.name)
        assert check.returncode == 1 and "greeting.txt is missing" in check.stdout
        sb.exec("echo hello > /workspace/greeting.txt", check=True)
        assert cli(school, "learner-sdk", "tutorial", "check", sb.name).returncode == 0
        assert sb.tutorial.get().steps[0].done
    with Course.from_name(
        k.course["id"], url=school.url, token=school.token("teacher-tut-sdk")
    ) as course:
        rows = course.progress()["students"]
        assert rows[0]["current"] == 2
        assert "learner-sdk" in course.progress_csv()
    progress = cli(school, "teacher-tut-sdk", "course", "progress", k.course["id"])
    assert progress.returncode == 0 and "learner-sdk" in progress.stdout, progress.stderr
    valid = cli(school, "teacher-tut-sdk", "template", "validate", k.template["id"])
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "step1/verify.sh:1: warning" in valid.stdout


def test_progress_survives_sleep_and_a_server_restart(school: LiveServer) -> None:
    k = tutorial_class(school, "teacher-tut-s", "shellsleep", sample_files())
    joined = join(school, "learner-s", k.invite["token"])
    assert joined.status_code == 201, joined.text
    sid = joined.json()["sandbox"]
    s = school.client("learner-s")
    sh(s, sid, "cd /workspace && echo hello > greeting.txt")
    assert s.post(f"/sandboxes/{sid}/tutorial/check").json()["current"] == 2
    slept = s.post(f"/sandboxes/{sid}/sleep")
    assert slept.status_code == 200, slept.text
    school.restart()
    after = school.client("learner-s").get(f"/sandboxes/{sid}/tutorial").json()
    assert after["current"] == 2 and after["steps"][0]["done"] is True
    assert after["last_check"]["step"] == 1 and after["last_check"]["passed"] is True
    # A check wakes the sandbox and runs as before.
    result = school.client("learner-s").post(f"/sandboxes/{sid}/tutorial/check").json()
    assert result["passed"] is False and "loud.txt should hold HELLO" in result["output"]
