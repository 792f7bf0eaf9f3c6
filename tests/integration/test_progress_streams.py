"""Long operations report how far they are: a sandbox made from a template, a clone
and a whole-class reset or starter update, each as Server-Sent Events
(``progress`` then ``done``, or ``error`` with the reason) on a real server with
real sandboxes, while plain JSON clients get the answers they always had.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server import LiveServer, running_server

STREAM = {"Accept": "text/event-stream"}
Event = tuple[str, dict[str, Any]]


@pytest.fixture(scope="module")
def pserver(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxprog", {"CLASSROOM_WARM_POOL": "0"}) as server:
        yield server


@pytest.fixture(scope="module")
def owner(pserver: LiveServer) -> Iterator[httpx.Client]:
    with pserver.client("prog-owner") as client:
        yield client


def stream(api: httpx.Client, path: str, body: dict[str, Any] | None = None) -> list[Event]:
    events: list[Event] = []
    with api.stream("POST", path, json=body or {}, headers=STREAM) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def progress(events: list[Event]) -> list[dict[str, Any]]:
    assert all(name == "progress" for name, _ in events[:-1]), events
    return [data for _, data in events[:-1]]


def template(api: httpx.Client, files: dict[str, bytes], setup: str = "") -> str:
    created = api.post(
        "/templates", json={"name": f"prog-{secrets.token_hex(3)}", "setup_command": setup}
    )
    assert created.status_code == 201, created.text
    tid = created.json()["id"]
    parts = [(path, (path.rsplit("/", 1)[-1], data)) for path, data in files.items()]
    assert api.put(f"/templates/{tid}/files", files=parts).status_code == 200
    return str(tid)


def sh(api: httpx.Client, sandbox_id: str, command: str) -> str:
    out = api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": command}).json()
    assert out["exit_code"] == 0, out
    return str(out["stdout"])


# ----------------------------------------------------------------- templates


def test_creating_from_a_template_streams_each_stage(owner: httpx.Client) -> None:
    tid = template(
        owner,
        {"hello.py": b"print('hi')\n"},
        setup="for i in 1 2 3; do echo installing part $i; done",
    )
    name = f"tpl-{secrets.token_hex(3)}"
    events = stream(owner, "/sandboxes", {"template": tid, "name": name})
    steps = progress(events)
    assert [s["stage"] for s in steps][:3] == ["container", "starter", "setup"], steps
    assert name in steps[0]["message"]
    assert any("installing part" in s["message"] for s in steps if s["stage"] == "setup")
    done_name, sandbox = events[-1]
    assert done_name == "done" and sandbox["name"] == name and sandbox["status"] == "running"
    assert sh(owner, sandbox["id"], "cat /workspace/hello.py") == "print('hi')\n"
    # A plain JSON client is answered as before.
    plain = owner.post("/sandboxes", json={"template": tid, "name": f"tpl-{secrets.token_hex(3)}"})
    assert plain.status_code == 201 and plain.json()["template"] == tid


def test_a_failing_setup_streams_its_reason_and_leaves_no_sandbox(owner: httpx.Client) -> None:
    tid = template(owner, {"a.txt": b"a\n"}, setup="echo 'no such module: flask' >&2; exit 3")
    name = f"bad-{secrets.token_hex(3)}"
    events = stream(owner, "/sandboxes", {"template": tid, "name": name})
    assert events[-1][0] == "error", events
    error = events[-1][1]
    assert error["code"] == "setup_failed"
    assert "exit code 3" in error["message"] and "no such module: flask" in error["message"]
    assert "cleanup" in [s["stage"] for s in progress(events)]
    names = [s["name"] for s in owner.get("/sandboxes").json()["sandboxes"]]
    assert name not in names


def test_someone_elses_template_is_a_plain_404_before_any_stream(
    pserver: LiveServer, owner: httpx.Client
) -> None:
    tid = template(owner, {"a.txt": b"a\n"})
    with pserver.client("prog-stranger") as stranger:
        response = stranger.post("/sandboxes", json={"template": tid}, headers=STREAM)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# ----------------------------------------------------------------- clone


@pytest.fixture(scope="module")
def box(owner: httpx.Client) -> str:
    """A sandbox holding a bare repository of 400 files at /tmp/src.git (no network)."""
    created = owner.post("/sandboxes", json={"name": "clone-box", "egress": "none"})
    assert created.status_code in (200, 201), created.text
    sid = str(created.json()["id"])
    sh(
        owner,
        sid,
        "set -e; mkdir -p /tmp/src && cd /tmp/src && git init -q -b main"
        " && for i in $(seq 400); do head -c 2000 /dev/urandom | base64 > f$i.txt; done"
        " && git add . && git -c user.name=t -c user.email=t@t commit -qm one"
        " && git clone -q --bare /tmp/src /tmp/src.git",
    )
    return sid


def test_a_clone_streams_gits_own_progress(owner: httpx.Client, box: str) -> None:
    events = stream(
        owner, f"/sandboxes/{box}/git/clone", {"url": "file:///tmp/src.git", "path": "copy"}
    )
    steps = progress(events)
    assert steps[0]["stage"] == "connect" and "file:///tmp/src.git" in steps[0]["message"]
    receiving = [s for s in steps if s["message"].startswith("Receiving objects")]
    assert receiving, steps
    assert receiving[-1]["percent"] == 100 and receiving[-1]["total"] >= 400
    assert receiving[-1]["current"] == receiving[-1]["total"]
    assert "% (" in receiving[-1]["message"]
    name, result = events[-1]
    assert name == "done" and result["path"] == "/workspace/copy" and result["branch"] == "main"
    assert sh(owner, box, "ls /workspace/copy | wc -l").strip() == "400"
    # Plain JSON clients get the answer as before.
    plain = owner.post(
        f"/sandboxes/{box}/git/clone", json={"url": "file:///tmp/src.git", "path": "copy2"}
    )
    assert plain.status_code == 200 and plain.json()["commit"] == result["commit"]


def test_a_clone_of_a_missing_repository_streams_gits_reason(owner: httpx.Client, box: str) -> None:
    events = stream(owner, f"/sandboxes/{box}/git/clone", {"url": "file:///tmp/nothing.git"})
    name, error = events[-1]
    assert name == "error" and error["code"] == "git_error", events
    assert "does not exist" in error["message"] or "not appear to be" in error["message"]
    # Into a folder that is not empty: git is not even started.
    events = stream(
        owner, f"/sandboxes/{box}/git/clone", {"url": "file:///tmp/src.git", "path": "copy"}
    )
    assert events[-1][0] == "error" and events[-1][1]["code"] == "already_exists"


def test_a_clone_into_someone_elses_sandbox_is_a_plain_404(
    pserver: LiveServer, owner: httpx.Client, box: str
) -> None:
    with pserver.client("prog-stranger") as stranger:
        response = stranger.post(
            f"/sandboxes/{box}/git/clone",
            json={"url": "file:///tmp/src.git", "path": "stolen"},
            headers=STREAM,
        )
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert "stolen" not in sh(owner, box, "ls /workspace")


# ----------------------------------------------------------------- a whole class


def test_class_reset_reports_each_student_and_goes_on_past_a_failure(
    pserver: LiveServer,
) -> None:
    teacher = pserver.client("prog-teacher")
    tid = template(teacher, {"task.py": b"# your code here\n"})
    course = teacher.post("/courses", json={"name": "Progress 101", "template": tid}).json()
    token = teacher.post(f"/courses/{course['id']}/invites", json={}).json()["token"]
    boxes = {}
    for student in ("prog-ann", "prog-bob", "prog-cyd"):
        joined = pserver.client(student).post(f"/invites/{token}/join")
        assert joined.status_code == 201, joined.text
        boxes[student] = joined.json()["sandbox"]
        sh(pserver.client(student), boxes[student], "echo mine > /workspace/task.py")
    # Bob's workspace cannot be emptied: a read-only folder with a file in it.
    sh(
        pserver.client("prog-bob"),
        boxes["prog-bob"],
        "mkdir /workspace/ro && touch /workspace/ro/x && chmod 555 /workspace/ro",
    )

    # Neither a student (403 teacher_only) nor a stranger (404) may reset the class.
    for other, status in (("prog-ann", 403), ("prog-stranger", 404)):
        for headers in ({}, STREAM):
            refused = pserver.client(other).post(f"/courses/{course['id']}/reset", headers=headers)
            assert refused.status_code == status, refused.text
            assert refused.headers["content-type"] == "application/json"
    assert sh(pserver.client("prog-ann"), boxes["prog-ann"], "cat /workspace/task.py") == "mine\n"

    events = stream(teacher, f"/courses/{course['id']}/reset")
    steps = progress(events)
    assert steps[0] == {
        "stage": "students",
        "message": "Resetting 3 students",
        "current": 0,
        "total": 3,
    }
    per_student = [s for s in steps if s["stage"] == "student"]
    assert [s["current"] for s in per_student] == [1, 2, 3]
    assert all(s["total"] == 3 and " of 3 students: " in s["message"] for s in per_student)
    bob = next(s for s in per_student if s["detail"]["student"] == "prog-bob")
    assert bob["detail"]["status"] == "failed"
    assert "Could not empty the workspace" in bob["detail"]["error"]
    assert "prog-bob failed: Could not empty the workspace" in bob["message"]
    name, result = events[-1]
    assert name == "done"
    by_name = {line["student"]: line for line in result["students"]}
    assert by_name["prog-bob"]["status"] == "failed"
    for student in ("prog-ann", "prog-cyd"):
        assert by_name[student]["status"] == "reset"
        assert by_name[student]["archive"]["path"].startswith(f"/api/v1/courses/{course['id']}/")
        own = pserver.client(student)
        assert sh(own, boxes[student], "cat /workspace/task.py") == "# your code here\n"

    # The same as plain JSON.
    plain = teacher.post(f"/courses/{course['id']}/reset")
    assert plain.status_code == 200
    assert sorted(line["status"] for line in plain.json()["students"]) == [
        "failed",
        "reset",
        "reset",
    ]

    # A starter update streams per student too (a student may not start one).
    refused = pserver.client("prog-ann").post(f"/courses/{course['id']}/update", headers=STREAM)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "teacher_only"
    events = stream(teacher, f"/courses/{course['id']}/update")
    steps = progress(events)
    assert steps[0]["message"] == "Updating 3 students"
    assert [s["current"] for s in steps if s["stage"] == "student"] == [1, 2, 3]
    assert events[-1][0] == "done" and len(events[-1][1]["students"]) == 3


def test_joining_a_course_streams_the_making_of_the_sandbox(pserver: LiveServer) -> None:
    teacher = pserver.client("prog-join-teacher")
    tid = template(teacher, {"task.py": b"# task\n"}, setup="echo getting the class ready")
    course = teacher.post("/courses", json={"name": "Join 101", "template": tid}).json()
    invite = teacher.post(f"/courses/{course['id']}/invites", json={}).json()

    # Bad links and the teacher are plain JSON errors, before any stream.
    bad = pserver.client("prog-joiner").post("/invites/no-such-invite-x/join", headers=STREAM)
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "not_found"
    own = teacher.post(f"/invites/{invite['token']}/join", headers=STREAM)
    assert own.status_code == 400 and own.json()["error"]["code"] == "is_teacher"

    events = stream(pserver.client("prog-joiner"), f"/invites/{invite['token']}/join")
    steps = progress(events)
    assert [s["stage"] for s in steps][:3] == ["container", "starter", "setup"], steps
    assert any("getting the class ready" in s["message"] for s in steps)
    name, joined = events[-1]
    assert name == "done" and joined["created"] is True
    assert joined["ide_path"] == f"/sandboxes/{joined['sandbox']}/"
    # Joining again: the same sandbox, nothing to make.
    again = stream(pserver.client("prog-joiner"), f"/invites/{invite['token']}/join")
    assert again == [("done", {**joined, "created": False})]

    teacher.delete(f"/courses/{course['id']}/invites/{invite['id']}")
    gone = pserver.client("prog-late").post(f"/invites/{invite['token']}/join", headers=STREAM)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "invite_expired"
