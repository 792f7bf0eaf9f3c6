"""Attacks on guided tutorials: passing a check without doing the step, reading or
checking someone else's progress, and reading the tutorial's scripts through its
image route. Each through the public API of a live server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_classroom import Class, join, sh
from tests.integration.test_tutorials import error, sample_files, tutorial_class
from tests.server import LiveServer, running_server


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxtutsec", {"CLASSROOM_WARM_POOL": "0"}) as server:
        yield server


@pytest.fixture(scope="module")
def klass(school: LiveServer) -> Class:
    return tutorial_class(school, "teacher-sec", "secshell", sample_files())


@pytest.fixture(scope="module")
def students(school: LiveServer, klass: Class) -> dict[str, str]:
    out = {}
    for name in ("sec-a", "sec-b"):
        response = join(school, name, klass.invite["token"])
        assert response.status_code == 201, response.text
        out[name] = response.json()["sandbox"]
    return out


def test_a_student_cannot_pass_without_doing_the_step(
    school: LiveServer, students: dict[str, str]
) -> None:
    a = school.client("sec-a")
    sid = students["sec-a"]
    # Rewriting every verify script and the index in the workspace changes nothing:
    # the server runs the starter's own.
    sh(a, sid, "cd /workspace && for f in step*/verify.sh; do printf 'exit 0\\n' > $f; done")
    sh(a, sid, "cd /workspace && printf '{}' > index.json")
    result = a.post(f"/sandboxes/{sid}/tutorial/check")
    assert result.status_code == 200, result.text
    assert result.json()["passed"] is False and result.json()["current"] == 1
    # Later steps stay locked: no checking ahead, no reading ahead.
    for step in (2, 3, 99, 0, -1):
        ahead = a.post(f"/sandboxes/{sid}/tutorial/check", json={"step": step})
        assert ahead.status_code in (400, 404, 409), ahead.text
    assert error(a.get(f"/sandboxes/{sid}/tutorial/steps/2"), 409)["code"] == "step_locked"
    tutorial = a.get(f"/sandboxes/{sid}/tutorial").json()
    assert tutorial["current"] == 1 and not any(s["done"] for s in tutorial["steps"])


def test_others_cannot_read_or_check_a_students_tutorial(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    b, stranger = school.client("sec-b"), school.client("sec-stranger")
    other = students["sec-a"]
    for who in (b, stranger):
        assert error(who.get(f"/sandboxes/{other}/tutorial"), 404)["code"] == "not_found"
        assert error(who.get(f"/sandboxes/{other}/tutorial/steps/1"), 404)["code"] == "not_found"
        assert error(who.post(f"/sandboxes/{other}/tutorial/check"), 404)["code"] == "not_found"
        image = f"/sandboxes/{other}/tutorial/files/images/steps.png"
        assert error(who.get(image), 404)["code"] == "not_found"
    # The teacher reads, never checks for the student.
    teacher_check = klass.teacher.post(f"/sandboxes/{other}/tutorial/check")
    assert error(teacher_check, 403)["code"] == "read_only"
    # The course's progress is the teacher's alone.
    course = klass.course["id"]
    assert error(b.get(f"/courses/{course}/progress"), 403)["code"] == "teacher_only"
    csv = b.get(f"/courses/{course}/progress", params={"format": "csv"})
    assert error(csv, 403)["code"] == "teacher_only"
    assert error(stranger.get(f"/courses/{course}/progress"), 404)["code"] == "not_found"
    template = klass.template["id"]
    for who in (b, stranger):
        for route in ("validate", "preview", "files/images/steps.png"):
            assert (
                error(who.get(f"/templates/{template}/tutorial/{route}"), 404)["code"]
                == "not_found"
            )


def test_a_teachers_look_starts_nothing(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    sid = students["sec-b"]
    assert klass.teacher.get(f"/sandboxes/{sid}/tutorial").status_code == 200
    roster = klass.teacher.get(f"/courses/{klass.course['id']}/students").json()["students"]
    row = next(r for r in roster if r["student"]["username"] == "sec-b")
    assert row["tutorial"] is None  # not started: no assets copied, no scripts run
    b = school.client("sec-b")
    assert (
        sh(b, sid, "test -e /tmp/tutorial-intro.txt || test -e ~/bin/count-lines.sh")["exit_code"]
        != 0
    )


def test_the_image_route_serves_images_only(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    a = school.client("sec-a")
    sid = students["sec-a"]
    assert a.get(f"/sandboxes/{sid}/tutorial").status_code == 200
    base = f"/sandboxes/{sid}/tutorial/files"
    for path in (
        "step2/verify.sh",
        "index.json",
        "images/../step2/verify.sh",
        "images/%2e%2e/step2/verify.sh",
        "../../../etc/passwd",
        "/etc/passwd",
    ):
        response = a.get(f"{base}/{path}")
        assert response.status_code == 404, (path, response.status_code)
        assert "HELLO" not in response.text
    ok = a.get(f"{base}/images/steps.png")
    assert ok.status_code == 200
    assert ok.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in ok.headers["content-security-policy"]


def test_closed_clients(school: LiveServer) -> None:
    """Without a login, nothing of a tutorial answers but 401."""
    anonymous = httpx.Client(base_url=school.url + "/api/v1", timeout=30)
    assert anonymous.get("/sandboxes/abc/tutorial").status_code == 401
    assert anonymous.post("/sandboxes/abc/tutorial/check").status_code == 401
