"""Classroom through the API against real sandboxes: invites, joining,
the teacher's read-only view, reset with an archive, starter updates that never
overwrite a student's edits, sharing, and every cross-access a user might try.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration.test_terminals import Screen, ws_url
from tests.server import LiveServer, running_server

STARTER = {
    "hello.py": b'print("hello from the starter")\n',
    "README.md": b"# Week 1\n\nRun `python3 hello.py`.\n",
    "data/notes.txt": b"first line\n",
}


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {"CLASSROOM_WARM_POOL": "0", "SANDBOX_REAP_INTERVAL": "1"}
    with running_server("sbxclass", settings) as server:
        yield server


def upload_starter(api: httpx.Client, template_id: str, files: dict[str, bytes]) -> None:
    response = api.put(
        f"/templates/{template_id}/files",
        # Each part's field name is its path in the starter.
        files=[(path, (path.rsplit("/", 1)[-1], content)) for path, content in files.items()],
    )
    assert response.status_code == 200, response.text


def make_template(api: httpx.Client, name: str, **extra: object) -> dict:
    response = api.post("/templates", json={"name": name, "open_files": ["hello.py"], **extra})
    assert response.status_code == 201, response.text
    template = response.json()
    upload_starter(api, template["id"], STARTER)
    return template


@dataclass
class Class:
    teacher: httpx.Client
    course: dict
    template: dict
    invite: dict


def new_class(server: LiveServer, teacher: str, name: str) -> Class:
    api = server.client(teacher)
    template = make_template(api, name)
    course = api.post("/courses", json={"name": f"{name} course", "template": template["id"]})
    assert course.status_code == 201, course.text
    invite = api.post(f"/courses/{course.json()['id']}/invites", json={})
    assert invite.status_code == 201, invite.text
    return Class(api, course.json(), template, invite.json())


def join(server: LiveServer, user: str, token: str) -> httpx.Response:
    return server.client(user).post(f"/invites/{token}/join")


def read(api: httpx.Client, sandbox_id: str, path: str) -> httpx.Response:
    return api.get(f"/sandboxes/{sandbox_id}/files/content", params={"path": path})


def sh(api: httpx.Client, sandbox_id: str, command: str) -> dict:
    response = api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def klass(school: LiveServer) -> Class:
    return new_class(school, "teacher-t", "py101")


@pytest.fixture(scope="module")
def students(school: LiveServer, klass: Class) -> dict[str, str]:
    """Two students who joined: username -> sandbox id."""
    out = {}
    for name in ("stu-a", "stu-b"):
        response = join(school, name, klass.invite["token"])
        assert response.status_code == 201, response.text
        out[name] = response.json()["sandbox"]
    return out


def test_joining_gives_a_sandbox_with_the_starter(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    a = school.client("stu-a")
    sid = students["stu-a"]
    assert read(a, sid, "/workspace/hello.py").content == STARTER["hello.py"]
    assert read(a, sid, "/workspace/data/notes.txt").content == STARTER["data/notes.txt"]
    assert sh(a, sid, "stat -c %U /workspace/hello.py")["stdout"] == "sandbox\n"
    # Following the link again: the same sandbox, not a second one.
    again = join(school, "stu-a", klass.invite["token"])
    assert again.status_code == 200 and again.json()["sandbox"] == sid
    courses = a.get("/courses").json()
    assert [c["id"] for c in courses["enrolled"]] == [klass.course["id"]]
    assert courses["enrolled"][0]["role"] == "student"
    teaching = klass.teacher.get("/courses").json()["teaching"]
    assert [(c["id"], c["role"], c["teacher"]) for c in teaching] == [
        (klass.course["id"], "teacher", "teacher-t")
    ]
    # The teacher's roster shows both with status and last activity.
    roster = klass.teacher.get(f"/courses/{klass.course['id']}/students").json()["students"]
    by_name = {row["student"]["username"]: row for row in roster}
    assert set(by_name) == {"stu-a", "stu-b"}
    assert by_name["stu-a"]["sandbox"]["id"] == sid
    assert by_name["stu-a"]["sandbox"]["status"] == "running"
    assert by_name["stu-a"]["sandbox"]["last_active_at"]


def test_invites_expire_and_are_revocable(school: LiveServer, klass: Class) -> None:
    course = klass.course["id"]
    short = klass.teacher.post(f"/courses/{course}/invites", json={"expires_in_days": 0.00001})
    assert short.status_code == 201
    time.sleep(1.2)
    expired = join(school, "late-student", short.json()["token"])
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "invite_expired"
    link = klass.teacher.post(f"/courses/{course}/invites", json={}).json()
    revoked = klass.teacher.delete(f"/courses/{course}/invites/{link['id']}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    gone = join(school, "late-student", link["token"])
    assert gone.status_code == 410
    assert "revoked" in gone.json()["error"]["message"]
    assert join(school, "late-student", "not-a-token-at-all").status_code == 404
    assert school.client("late-student").get("/courses").json()["enrolled"] == []
    bad = klass.teacher.post(f"/courses/{course}/invites", json={"expires_in_days": "soon"})
    assert bad.status_code == 400
    # The teacher does not join their own course.
    assert join(school, "teacher-t", klass.invite["token"]).status_code == 400


def test_students_see_nothing_of_each_other(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    a, b = school.client("stu-a"), school.client("stu-b")
    course = klass.course["id"]
    b_box = students["stu-b"]
    for method, path in [
        ("GET", f"/sandboxes/{b_box}"),
        ("GET", f"/sandboxes/{b_box}/files?path=/workspace"),
        ("GET", f"/sandboxes/{b_box}/files/content?path=/workspace/hello.py"),
        ("GET", f"/sandboxes/{b_box}/terminals"),
        ("GET", f"/sandboxes/{b_box}/git/status?path=/workspace"),
        ("POST", f"/sandboxes/{b_box}/exec"),
        ("DELETE", f"/sandboxes/{b_box}"),
    ]:
        response = a.request(method, path, json={"command": "id"} if method == "POST" else None)
        assert response.status_code == 404, (method, path, response.text)
    # Teacher-only course routes: a student is told they are not the teacher.
    for method, path in [
        ("GET", f"/courses/{course}/students"),
        ("GET", f"/courses/{course}/invites"),
        ("POST", f"/courses/{course}/invites"),
        ("POST", f"/courses/{course}/update"),
        ("POST", f"/courses/{course}/students/1/reset"),
        ("DELETE", f"/courses/{course}"),
    ]:
        response = a.request(method, path)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "teacher_only"
    # Someone else's archives and terminals.
    b_id = school.manage("shell", "-c", _user_id("stu-b")).strip().splitlines()[-1]
    assert a.get(f"/courses/{course}/students/{b_id}/archives").status_code == 404
    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_url(school, f"/ws/sandboxes/{b_box}/terminals/main?readonly=1")
            + f"&token={school.token('stu-a')}",
            open_timeout=30,
        )
    assert refused.value.response.status_code == 403
    assert b.get(f"/sandboxes/{students['stu-a']}").status_code == 404


def _user_id(username: str) -> str:
    return (
        "from django.contrib.auth import get_user_model\n"
        f"print(get_user_model().objects.get(username={username!r}).pk)\n"
    )


def test_strangers_and_other_teachers_get_404(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    other = new_class(school, "teacher-u", "other")
    course = klass.course["id"]
    for who in ("stranger", "teacher-u"):
        api = school.client(who)
        for method, path in [
            ("GET", f"/courses/{course}"),
            ("GET", f"/courses/{course}/students"),
            ("GET", f"/courses/{course}/shares"),
            ("POST", f"/courses/{course}/invites"),
            ("POST", f"/courses/{course}/update"),
            ("GET", f"/sandboxes/{students['stu-a']}"),
            ("GET", f"/sandboxes/{students['stu-a']}/files?path=/workspace"),
        ]:
            response = api.request(method, path)
            assert response.status_code == 404, (who, method, path, response.text)
    # A teacher cannot start a course on someone else's template.
    stolen = other.teacher.post("/courses", json={"name": "x", "template": klass.template["id"]})
    assert stolen.status_code == 404
    assert school.client("stranger").get("/courses").json() == {"teaching": [], "enrolled": []}


def test_the_teacher_looks_but_does_not_touch(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    a, t = school.client("stu-a"), klass.teacher
    sid = students["stu-a"]
    a.put(
        f"/sandboxes/{sid}/files/content",
        params={"path": "/workspace/mine.py"},
        content=b"print('my work')\n",
    )
    assert t.get(f"/sandboxes/{sid}").json()["id"] == sid
    assert read(t, sid, "/workspace/mine.py").content == b"print('my work')\n"
    listing = t.get(f"/sandboxes/{sid}/files", params={"path": "/workspace"}).json()
    assert "mine.py" in {e["name"] for e in listing["entries"]}
    for method, path, body in [
        ("POST", f"/sandboxes/{sid}/exec", {"command": "rm -rf /workspace"}),
        ("DELETE", f"/sandboxes/{sid}/files?path=/workspace/mine.py", None),
        ("POST", f"/sandboxes/{sid}/sleep", None),
        ("DELETE", f"/sandboxes/{sid}", None),
        ("POST", f"/sandboxes/{sid}/ports", {"port": 8000}),
    ]:
        response = t.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "read_only"
    put = t.put(
        f"/sandboxes/{sid}/files/content", params={"path": "/workspace/mine.py"}, content=b"x"
    )
    assert put.status_code == 403
    assert read(a, sid, "/workspace/mine.py").content == b"print('my work')\n"


def test_the_teacher_watches_a_terminal_live_read_only(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    sid = students["stu-a"]
    student_url = ws_url(school, f"/ws/sandboxes/{sid}/terminals/main?token=")
    with connect(student_url + school.token("stu-a"), open_timeout=60) as student:
        typist = Screen(student)
        student.send(b"echo ready-$((6*7))\n")
        typist.until(b"ready-42")
        # Writing to the terminal is the owner's: a full attach is refused.
        with pytest.raises(InvalidStatus):
            connect(student_url + school.token("teacher-t"), open_timeout=30)
        watch_url = ws_url(
            school,
            f"/ws/sandboxes/{sid}/terminals/main?readonly=1&token={school.token('teacher-t')}",
        )
        with connect(watch_url, open_timeout=60) as watcher:
            seen = Screen(watcher)
            seen.until(b"ready-42")  # replayed
            watcher.send(b"echo from-the-teacher\n")  # ignored
            student.send(b"echo live-$((5*5))\n")
            seen.until(b"live-25")
            assert b"from-the-teacher" not in typist.until(b"live-25")
    # A watcher cannot start a terminal that does not exist.
    missing = ws_url(
        school,
        f"/ws/sandboxes/{sid}/terminals/nope?readonly=1&token={school.token('teacher-t')}",
    )
    with connect(missing, open_timeout=60) as ws:
        assert Screen(ws).event()["type"] == "error"


def test_a_watching_teacher_lets_the_sandbox_sleep(school: LiveServer, klass: Class) -> None:
    """The read-only page polls ports and terminals every few seconds: that neither
    keeps an idle workspace awake nor wakes a sleeping one."""
    joined = join(school, "stu-idle", klass.invite["token"])
    assert joined.status_code == 201, joined.text
    sid = joined.json()["sandbox"]
    student, teacher = school.client("stu-idle"), klass.teacher
    sh(student, sid, "true")
    patched = student.patch(f"/sandboxes/{sid}", json={"sleep_after": 2})
    assert patched.status_code == 200, patched.text
    deadline = time.monotonic() + 60
    while student.get(f"/sandboxes/{sid}").json()["status"] != "sleeping":
        assert time.monotonic() < deadline, "the teacher's polling kept the sandbox awake"
        for path in ("ports", "terminals"):
            polled = teacher.get(f"/sandboxes/{sid}/{path}")
            assert polled.status_code == 200, polled.text
        time.sleep(0.3)
    for _ in range(5):
        assert teacher.get(f"/sandboxes/{sid}/ports").json()["listening"] == []
        assert teacher.get(f"/sandboxes/{sid}/terminals").json()["terminals"] == []
        time.sleep(0.3)
    assert student.get(f"/sandboxes/{sid}").json()["status"] == "sleeping"
    # The student's own listing wakes it, as any call of the owner does.
    assert student.get(f"/sandboxes/{sid}/ports").status_code == 200
    assert student.get(f"/sandboxes/{sid}").json()["status"] == "running"


def test_reset_keeps_the_old_workspace_as_an_archive(
    school: LiveServer, sandbox_image: str
) -> None:
    k = new_class(school, "teacher-r", "resets")
    sid = join(school, "stu-r", k.invite["token"]).json()["sandbox"]
    r = school.client("stu-r")
    sh(r, sid, "echo broken > hello.py && echo extra > extra.txt && rm README.md")
    student_id = school.manage("shell", "-c", _user_id("stu-r")).strip().splitlines()[-1]
    course = k.course["id"]
    reset = k.teacher.post(f"/courses/{course}/students/{student_id}/reset")
    assert reset.status_code == 200, reset.text
    archive = reset.json()
    # The workspace is the template's again.
    assert read(r, sid, "/workspace/hello.py").content == STARTER["hello.py"]
    assert read(r, sid, "/workspace/README.md").content == STARTER["README.md"]
    assert read(r, sid, "/workspace/extra.txt").status_code == 404
    # The old one downloads as a .tar.gz with the student's files in it, for the
    # teacher and for the student; not for a classmate.
    path = archive["path"].removeprefix("/api/v1")
    for api in (k.teacher, r):
        download = api.get(path)
        assert download.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as tar:
            names = {m.name for m in tar.getmembers()}
            assert {"workspace/hello.py", "workspace/extra.txt"} <= names
            assert "workspace/README.md" not in names
            member = tar.getmember("workspace/hello.py")
            assert tar.extractfile(member).read() == b"broken\n"  # type: ignore[union-attr]
    listed = r.get(f"/courses/{course}/students/{student_id}/archives").json()["archives"]
    assert [a["id"] for a in listed] == [archive["id"]]
    join(school, "stu-r2", k.invite["token"])
    assert school.client("stu-r2").get(path).status_code == 404


def test_starter_update_merges_without_overwriting_students(school: LiveServer) -> None:
    k = new_class(school, "teacher-m", "merges")
    edited = join(school, "stu-edits", k.invite["token"]).json()["sandbox"]
    untouched = join(school, "stu-idle", k.invite["token"]).json()["sandbox"]
    e = school.client("stu-edits")
    sh(e, edited, "printf 'print(\"my own version\")\\n' > hello.py")
    upload_starter(
        k.teacher,
        k.template["id"],
        {"hello.py": b'print("hello, week 2")\n', "week2.md": b"# Week 2\n"},
    )
    result = k.teacher.post(f"/courses/{k.course['id']}/update")
    assert result.status_code == 200, result.text
    reports = {r["student"]: r for r in result.json()["students"]}
    assert reports["stu-idle"]["status"] == "updated"
    assert reports["stu-edits"]["status"] == "updated"
    conflicts = reports["stu-edits"]["conflicts"]
    assert [c["path"] for c in conflicts] == ["hello.py"]
    # The student's text is untouched; the starter's is kept beside it.
    assert read(e, edited, "/workspace/hello.py").content == b'print("my own version")\n'
    aside = read(e, edited, "/workspace/" + conflicts[0]["kept_as"]).content
    assert aside == b'print("hello, week 2")\n'
    assert read(e, edited, "/workspace/week2.md").content == b"# Week 2\n"
    idle = school.client("stu-idle")
    assert read(idle, untouched, "/workspace/hello.py").content == b'print("hello, week 2")\n'
    roster = k.teacher.get(f"/courses/{k.course['id']}/students").json()["students"]
    row = next(r for r in roster if r["student"]["username"] == "stu-edits")
    assert row["last_update"]["conflicts"] == conflicts


def test_sharing_a_view_and_a_preview_then_revoking(
    school: LiveServer, klass: Class, students: dict[str, str]
) -> None:
    a, b = school.client("stu-a"), school.client("stu-b")
    course, sid = klass.course["id"], students["stu-a"]
    # Only one's own sandbox can be shared.
    stolen = b.post(f"/courses/{course}/shares", json={"sandbox": sid, "kind": "view"})
    assert stolen.status_code == 404
    view = a.post(f"/courses/{course}/shares", json={"sandbox": sid, "kind": "view"})
    assert view.status_code == 201, view.text
    assert read(b, sid, "/workspace/hello.py").status_code == 200
    assert b.post(f"/sandboxes/{sid}/exec", json={"command": "id"}).status_code == 403
    assert read(school.client("stranger"), sid, "/workspace/hello.py").status_code == 404
    # A preview: the port is exposed and its URL listed for the class.
    sh(a, sid, "setsid -f python3 -m http.server 8123 --directory /workspace >/dev/null 2>&1")
    preview = a.post(
        f"/courses/{course}/shares", json={"sandbox": sid, "kind": "preview", "port": 8123}
    )
    assert preview.status_code == 201, preview.text
    shares = b.get(f"/courses/{course}/shares").json()["shares"]
    assert {s["kind"] for s in shares} == {"view", "preview"}
    url = next(s["url"] for s in shares if s["kind"] == "preview")
    host = httpx.URL(url).host
    page = _get_preview(school, host, "/hello.py")
    assert page.status_code == 200 and page.content == STARTER["hello.py"]
    # A classmate watching the terminal and the files live...
    owner_url = ws_url(school, f"/ws/sandboxes/{sid}/terminals/shown?token=")
    watch_url = ws_url(school, f"/ws/sandboxes/{sid}/terminals/shown?readonly=1&token=")
    with (
        connect(owner_url + school.token("stu-a"), open_timeout=60) as owner_ws,
        connect(watch_url + school.token("stu-b"), open_timeout=60) as watcher,
        b.stream("GET", f"/sandboxes/{sid}/files/watch", params={"path": "/workspace"}) as sse,
    ):
        Screen(owner_ws).until(b"$ ")
        Screen(watcher).until(b"$ ")
        assert sse.status_code == 200
        # ...until the teacher revokes both: the view closes, the streams open on it
        # end within seconds, and the preview URL dies at once.
        for item in shares:
            response = klass.teacher.delete(f"/courses/{course}/shares/{item['id']}")
            assert response.status_code == 204
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                watcher.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        for _ in sse.iter_raw():  # returns once the server ends the stream
            pass
        assert time.monotonic() - started < 20
    assert read(b, sid, "/workspace/hello.py").status_code == 404
    assert _get_preview(school, host, "/hello.py").status_code == 404
    assert b.get(f"/courses/{course}/shares").json()["shares"] == []
    # A classmate cannot revoke someone else's share.
    again = a.post(f"/courses/{course}/shares", json={"sandbox": sid, "kind": "view"}).json()
    assert b.delete(f"/courses/{course}/shares/{again['id']}").status_code == 404
    assert a.delete(f"/courses/{course}/shares/{again['id']}").status_code == 204


def _get_preview(server: LiveServer, host: str, path: str) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(server.url + path, headers={"Host": f"{host}:{server.port}"})
        if response.status_code != 502 or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_bad_input_gets_clear_errors(school: LiveServer, klass: Class) -> None:
    t = klass.teacher
    course = klass.course["id"]
    cases = [
        t.post("/courses", json={"name": "", "template": klass.template["id"]}),
        t.post("/courses", json={"name": "x"}),
        t.post("/courses", json={"name": "x", "template": "nope"}),
        t.post(f"/courses/{course}/invites", json={"expires_in_days": -1}),
        t.post(f"/courses/{course}/invites", json={"extra": 1}),
        t.delete(f"/courses/{course}/invites/999999"),
        t.post(f"/courses/{course}/students/999999/reset"),
        t.post(f"/courses/{course}/shares", json={"sandbox": "x", "kind": "screen"}),
        t.delete(f"/courses/{course}/shares/999999"),
        t.get("/courses/nope"),
        t.post("/courses", json={"name": "a\u0000b", "template": klass.template["id"]}),
        t.post(f"/courses/{course}/students/{10**25}/reset"),
        t.get(f"/courses/{course}/students/{10**25}/archives"),
        t.get(f"/courses/{course}/archives/{10**25}"),
        t.post("/invites/" + "a" * 5000 + "/join"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] and response.json()["error"]["message"]


def _pool_size(server: LiveServer, template_id: str) -> int:
    code = (
        "from sandboxes.models import PoolEntry\n"
        f"print(PoolEntry.objects.filter(template_id={template_id!r}).count())\n"
    )
    return int(server.manage("shell", "-c", code).strip().splitlines()[-1])


def _wait_pool(server: LiveServer, template_id: str, size: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _pool_size(server, template_id) != size:
        assert time.monotonic() < deadline, f"pool never reached {size}"
        time.sleep(1)


def test_warm_pool_hands_out_ready_sandboxes_with_the_current_starter(
    school: LiveServer,
) -> None:
    api = school.client("teacher-p")
    template = make_template(api, "pooled", warm_pool=2)
    course = api.post("/courses", json={"name": "pooled", "template": template["id"]}).json()
    token = api.post(f"/courses/{course['id']}/invites", json={}).json()["token"]
    _wait_pool(school, template["id"], 2)
    first = join(school, "stu-p1", token)
    assert first.status_code == 201 and first.json()["from_pool"] is True
    p1 = school.client("stu-p1")
    sid = first.json()["sandbox"]
    assert read(p1, sid, "/workspace/hello.py").content == STARTER["hello.py"]
    box = p1.get(f"/sandboxes/{sid}").json()
    assert box["status"] == "running" and box["keep_alive"] is False
    assert sid in {s["id"] for s in p1.get("/sandboxes").json()["sandboxes"]}
    # The pool is topped up again once joins pause.
    _wait_pool(school, template["id"], 2)
    # A new starter makes the pooled sandboxes stale: they are replaced, and the
    # next student gets the new starter.
    upload_starter(api, template["id"], {"hello.py": b"print('v2')\n"})
    time.sleep(3)
    _wait_pool(school, template["id"], 2)
    second = join(school, "stu-p2", token)
    assert second.status_code == 201
    p2 = school.client("stu-p2")
    content = read(p2, second.json()["sandbox"], "/workspace/hello.py").content
    assert content == b"print('v2')\n"
    # Once no invite link can be used, nobody will join: the pool is drained (the
    # students keep their sandboxes).
    invites = api.get(f"/courses/{course['id']}/invites").json()["invites"]
    for invite in invites:
        api.delete(f"/courses/{course['id']}/invites/{invite['id']}")
    _wait_pool(school, template["id"], 0)
    assert p1.get(f"/sandboxes/{sid}").status_code == 200
    assert api.delete(f"/courses/{course['id']}").status_code == 204
