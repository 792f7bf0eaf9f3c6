"""Templates and starter code through the HTTP API, in real sandboxes.

The starter repositories are file:// repositories made on the host in a temporary
directory; the test server allows them (TEMPLATE_REPO_ALLOW_LOCAL=1). The server
fetches them into its own repository per template and hands each sandbox a git
bundle through the agent, so none of this needs the sandbox to reach the host.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import LiveServer, running_server


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=Teacher", "-c", "user.email=t@example.com", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


HELLO = "def greet():\n    return 'hello'\n\n\nprint(greet())\n"
STARTER = {
    "hello.py": HELLO,
    "README.md": "# Lesson 1\n",
    "remove-me.txt": "old text\n",
    "data/numbers.txt": "1\n2\n3\n",
    ".gitignore": "*.log\n",
}


@pytest.fixture(scope="module")
def tserver(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxtpl", {"TEMPLATE_REPO_ALLOW_LOCAL": "1"}) as server:
        yield server


@pytest.fixture(scope="module")
def teacher(tserver: LiveServer) -> Iterator[httpx.Client]:
    with tserver.client("teacher") as client:
        yield client


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "lesson"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    write(path, STARTER)
    commit(path, "lesson 1")
    return path


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


def sh(api: httpx.Client, sandbox: dict, command: str) -> str:
    out = ok(api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command}))
    assert out["exit_code"] == 0, out
    return out["stdout"]


def name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------- CRUD


def test_template_crud_and_validation(tserver: LiveServer, teacher: httpx.Client) -> None:
    bad = [
        ({"name": "Bad Name"}, "invalid_name"),
        ({"name": "x", "limits": {"memory_mb": 10**7}}, "invalid_limits"),
        ({"name": "x", "limits": {"cpus": 64}}, "invalid_limits"),
        ({"name": "x", "limits": {"memory_mb": 8}}, "invalid_limits"),
        ({"name": "x", "limits": {"gpus": 1}}, "invalid_limits"),
        ({"name": "x", "limits": {"memory_mb": "lots"}}, "invalid_limits"),
        ({"name": "x", "env": {"1BAD": "v"}}, "invalid_env"),
        ({"name": "x", "open_files": ["../etc/passwd"]}, "invalid_open_files"),
        ({"name": "x", "open_files": ["/abs.py"]}, "invalid_open_files"),
        ({"name": "x", "open_files": [".git/config"]}, "invalid_open_files"),
        ({"name": "x", "preview_port": 0}, "invalid_port"),
        ({"name": "x", "preview_port": 70000}, "invalid_port"),
        ({"name": "x", "warm_pool": -1}, "invalid_warm_pool"),
        ({"name": "x", "warm_pool": 100000}, "invalid_warm_pool"),
        ({"name": "x", "image": "alpine:latest"}, "invalid_image"),
        ({"name": "x", "repo_url": "ext::sh -c id"}, "invalid_repo_url"),
        ({"name": "x", "repo_url": "-uhttps://example.com"}, "invalid_repo_url"),
        ({"name": "x", "repo_url": "file:///nope", "repo_branch": "-b"}, "invalid_branch"),
    ]
    for body, code in bad:
        assert error(teacher.post("/templates", json=body), 400)["code"] == code, body
    # The schema's own checks answer in the same shape.
    assert error(teacher.post("/templates", json={"name": "x", "colour": 1}), 400)
    assert error(teacher.post("/templates", json={"name": "x", "preview_port": "80"}), 400)

    created = ok(
        teacher.post(
            "/templates",
            json={
                "name": "crud",
                "description": "A template",
                "env": {"LESSON": "1"},
                "limits": {"memory_mb": 256, "cpus": 0.5},
                "open_files": ["./src/main.py", "README.md"],
                "preview_port": 8000,
                "warm_pool": 2,
            },
        ),
        201,
    )
    tid = created["id"]
    assert created["open_files"] == ["src/main.py", "README.md"]
    assert created["limits"] == {"memory_mb": 256, "cpus": 0.5}
    assert created["starter_head"] == ""
    assert ok(teacher.get(f"/templates/{tid}"))["name"] == "crud"
    assert tid in [t["id"] for t in ok(teacher.get("/templates"))["templates"]]
    assert error(teacher.post("/templates", json={"name": "crud"}), 409)["code"] == "already_exists"

    patched = ok(teacher.patch(f"/templates/{tid}", json={"description": "new", "warm_pool": 0}))
    assert (patched["description"], patched["warm_pool"], patched["preview_port"]) == (
        "new",
        0,
        8000,
    )
    assert error(teacher.patch(f"/templates/{tid}", json={"preview_port": -5}), 400)
    assert ok(teacher.get(f"/templates/{tid}"))["preview_port"] == 8000

    with tserver.client("intruder") as other:
        for response in (
            other.get(f"/templates/{tid}"),
            other.patch(f"/templates/{tid}", json={"description": "mine"}),
            other.delete(f"/templates/{tid}"),
            other.post("/sandboxes", json={"template": tid}),
        ):
            assert error(response, 404)["code"] == "not_found"
        assert ok(other.get("/templates"))["templates"] == []

    # A template a course uses cannot be deleted.
    tserver.manage(
        "shell",
        "-c",
        "from sandboxes.classroom.models import Course, Template; "
        f"t = Template.objects.get(pk='{tid}'); "
        "Course.objects.create(teacher=t.owner, name='c', template=t)",
    )
    assert error(teacher.delete(f"/templates/{tid}"), 409)["code"] == "template_in_use"
    tserver.manage(
        "shell",
        "-c",
        f"from sandboxes.classroom.models import Course; "
        f"Course.objects.filter(template_id='{tid}').delete()",
    )
    assert teacher.delete(f"/templates/{tid}").status_code == 204
    assert error(teacher.get(f"/templates/{tid}"), 404)["code"] == "not_found"


def test_unknown_template_is_404(teacher: httpx.Client) -> None:
    body = error(teacher.post("/sandboxes", json={"template": "nosuchtempl", "name": "t404"}), 404)
    assert "template" in body["message"]
    names = [s["name"] for s in ok(teacher.get("/sandboxes"))["sandboxes"]]
    assert "t404" not in names


# --------------------------------------------------------------------- starter code


def test_sandbox_from_repo_template(teacher: httpx.Client, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    template = ok(
        teacher.post(
            "/templates",
            json={
                "name": name("repo"),
                "repo_url": f"file://{repo}",
                "setup_command": "echo ran-as-$(id -un) > .setup-done && pwd >> .setup-done",
                "env": {"LESSON": "one", "PYTHONDONTWRITEBYTECODE": "1"},
                "limits": {"memory_mb": 256, "cpus": 0.5, "disk_mb": 300},
                "open_files": ["hello.py"],
                "preview_port": 8000,
            },
        ),
        201,
    )
    assert template["starter_head"] == head
    sandbox = ok(
        teacher.post(
            "/sandboxes",
            json={"template": template["id"], "name": name("s"), "env": {"EXTRA": "x"}},
        ),
        201,
    )
    assert sandbox["template"] == template["id"]
    sid = sandbox["id"]
    assert sh(teacher, sandbox, "cat hello.py") == HELLO
    assert sh(teacher, sandbox, "cat data/numbers.txt") == "1\n2\n3\n"
    assert sh(teacher, sandbox, "cat .setup-done") == "ran-as-sandbox\n/workspace\n"
    assert sh(teacher, sandbox, "echo $LESSON-$EXTRA") == "one-x\n"
    # The template's limits (cgroup v2 or v1, whichever the engine uses).
    cg = "/sys/fs/cgroup"
    memory = f"cat {cg}/memory.max 2>/dev/null || cat {cg}/memory/memory.limit_in_bytes"
    cpu = f"cut -d' ' -f1 {cg}/cpu.max 2>/dev/null || cat {cg}/cpu/cpu.cfs_quota_us"
    assert sh(teacher, sandbox, memory) == f"{256 * 1024 * 1024}\n"
    assert sh(teacher, sandbox, cpu) == "50000\n"
    disk = ok(teacher.get(f"/sandboxes/{sid}"))["disk"]
    assert disk["quota_bytes"] == 300 * 1024 * 1024, disk
    # A git working copy of the starter, owned by the sandbox user, clean.
    assert sh(teacher, sandbox, "git rev-parse HEAD") == head + "\n"
    assert sh(teacher, sandbox, "git branch --show-current") == "main\n"
    assert sh(teacher, sandbox, "git remote get-url origin") == f"file://{repo}\n"
    assert sh(teacher, sandbox, "git status --porcelain --ignored=no -- ':!.setup-done'") == ""
    assert sh(teacher, sandbox, "stat -c %U hello.py data .git") == "sandbox\n" * 3
    # Asking again by name returns the same sandbox (200), not a second install.
    again = teacher.post("/sandboxes", json={"template": template["id"], "name": sandbox["name"]})
    assert ok(again)["id"] == sid
    # Up to date right away.
    report = ok(teacher.post(f"/sandboxes/{sid}/starter/update"))
    assert (report["status"], report["head"], report["conflicts"]) == ("up_to_date", head, [])


def test_sandbox_from_uploaded_files_without_network(teacher: httpx.Client) -> None:
    template = ok(
        teacher.post("/templates", json={"name": name("upl"), "setup_command": "ls -R > .tree"}),
        201,
    )
    tid = template["id"]
    # No starter yet: a sandbox is still made (setup runs in an empty workspace).
    files = [
        ("src/main.py", ("ignored-name.py", b"print('main')\n")),
        ("files", ("notes.txt", b"notes\n")),
        ("message", (None, b"First upload")),
    ]
    uploaded = ok(teacher.put(f"/templates/{tid}/files", files=files))
    first = uploaded["starter_head"]
    assert len(first) == 40
    more = ok(teacher.put(f"/templates/{tid}/files", files=[("notes.txt", ("n", b"notes v2\n"))]))
    assert more["starter_head"] != first
    # Bad paths are refused, and nothing is committed.
    for bad in ("../escape.py", "/abs.py", ".git/hooks/pre-commit", "a/.git/x"):
        response = teacher.put(f"/templates/{tid}/files", files=[(bad, ("x", b"x"))])
        assert error(response, 400)["code"] == "invalid_path", bad
    assert ok(teacher.get(f"/templates/{tid}"))["starter_head"] == more["starter_head"]
    assert error(teacher.put(f"/templates/{tid}/files", json={"a": 1}), 400)

    sandbox = ok(
        teacher.post("/sandboxes", json={"template": tid, "name": name("off"), "egress": "none"}),
        201,
    )
    assert sandbox["egress"] == "none"
    assert sh(teacher, sandbox, "cat src/main.py notes.txt") == "print('main')\nnotes v2\n"
    assert "main.py" in sh(teacher, sandbox, "cat .tree")
    log = sh(teacher, sandbox, "git log --format=%s")
    assert log.splitlines() == ["Upload 1 starter file(s)", "First upload"]
    assert sh(teacher, sandbox, "git remote") == ""
    # No network at all in there (only the agent's socket).
    assert sh(teacher, sandbox, "ls /sys/class/net") == "lo\n"


def test_bad_repositories_answer_with_gits_reason(teacher: httpx.Client, repo: Path) -> None:
    missing = error(
        teacher.post("/templates", json={"name": "broken", "repo_url": "file:///no/such/repo"}),
        400,
    )
    assert missing["code"] == "git_error"
    assert "does not appear to be a git repository" in missing["message"], missing
    # Nothing was made.
    assert "broken" not in [t["name"] for t in ok(teacher.get("/templates"))["templates"]]

    branch = error(
        teacher.post(
            "/templates",
            json={"name": "broken", "repo_url": f"file://{repo}", "repo_branch": "nope"},
        ),
        400,
    )
    assert "nope" in branch["message"] and "remote ref" in branch["message"], branch

    # Credentials in a URL never come back, in errors or in the template.
    secret = "hunter2-" + secrets.token_hex(4)
    creds = error(
        teacher.post(
            "/templates",
            json={"name": "broken", "repo_url": f"http://bob:{secret}@127.0.0.1:9/x.git"},
        ),
        400,
    )
    assert secret not in creds["message"] and creds["code"] == "git_error", creds

    template = ok(teacher.post("/templates", json={"name": name("fine")}), 201)
    refresh = error(teacher.post(f"/templates/{template['id']}/refresh"), 400)
    assert refresh["code"] == "no_repo_url"


def test_failing_setup_is_reported_and_leaves_no_sandbox(teacher: httpx.Client, repo: Path) -> None:
    template = ok(
        teacher.post(
            "/templates",
            json={
                "name": name("fail"),
                "repo_url": str(repo),
                "setup_command": "echo building...; echo 'no such module' >&2; exit 3",
            },
        ),
        201,
    )
    sname = name("failing")
    body = error(teacher.post("/sandboxes", json={"template": template["id"], "name": sname}), 400)
    assert body["code"] == "setup_failed"
    assert "exit code 3" in body["message"] and "no such module" in body["message"], body
    assert sname not in [s["name"] for s in ok(teacher.get("/sandboxes"))["sandboxes"]]


def test_starter_update_merges_like_nbgitpuller(
    tserver: LiveServer, teacher: httpx.Client, repo: Path
) -> None:
    """The teacher changes the starter while a student works: the student's text is
    never overwritten, the starter's version of a conflicting file is kept beside it,
    a deleted file the starter changed comes back, everything else arrives."""
    template = ok(
        teacher.post("/templates", json={"name": name("merge"), "repo_url": f"file://{repo}"}),
        201,
    )
    sandbox = ok(teacher.post("/sandboxes", json={"template": template["id"], "name": "m"}), 201)
    sid = sandbox["id"]

    student_hello = HELLO.replace("'hello'", "'hello from the student'")
    ok(
        teacher.put(
            f"/sandboxes/{sid}/files/content",
            params={"path": "hello.py"},
            content=student_hello.encode(),
        )
    )
    sh(teacher, sandbox, "printf 'my own notes\\n' > notes.md && rm remove-me.txt")
    sh(teacher, sandbox, "printf 'debug\\n' > run.log && printf 'scratch\\n' > scratch.py")

    write(
        repo,
        {
            "hello.py": HELLO.replace("'hello'", "'hello, class'"),
            "notes.md": "# Notes from the teacher\n",
            "remove-me.txt": "now with new text\n",
            "README.md": "# Lesson 1\n\nUpdated instructions.\n",
            "lesson2.py": "print('lesson 2')\n",
        },
    )
    (repo / "data" / "numbers.txt").unlink()
    new_head = commit(repo, "lesson 1, revised")

    # Not fetched yet: the student is up to date with what the server has.
    assert ok(teacher.post(f"/sandboxes/{sid}/starter/update"))["status"] == "up_to_date"
    assert ok(teacher.post(f"/templates/{template['id']}/refresh"))["starter_head"] == new_head

    report = ok(teacher.post(f"/sandboxes/{sid}/starter/update"))
    assert report["status"] == "updated" and report["head"] == new_head, report
    conflicts = {c["path"]: c for c in report["conflicts"]}
    assert set(conflicts) == {"hello.py", "notes.md"}, report
    assert conflicts["hello.py"]["kept_as"] == "hello.starter.py"
    assert conflicts["notes.md"]["kept_as"] == "notes.starter.md"
    assert report["restored"] == ["remove-me.txt"]
    assert {"README.md", "lesson2.py", "data/numbers.txt", "remove-me.txt"} <= set(
        report["updated"]
    )
    assert "hello.py" not in report["updated"]
    assert report["saved_work"] is True

    # The student's text is intact; the starter's versions are beside it.
    assert sh(teacher, sandbox, "cat hello.py") == student_hello
    assert sh(teacher, sandbox, "cat hello.starter.py") == HELLO.replace(
        "'hello'", "'hello, class'"
    )
    assert sh(teacher, sandbox, "cat notes.md") == "my own notes\n"
    assert sh(teacher, sandbox, "cat notes.starter.md") == "# Notes from the teacher\n"
    # Non-conflicting changes arrived; the deleted file the starter changed is back.
    assert sh(teacher, sandbox, "cat README.md") == "# Lesson 1\n\nUpdated instructions.\n"
    assert sh(teacher, sandbox, "cat lesson2.py") == "print('lesson 2')\n"
    assert sh(teacher, sandbox, "cat remove-me.txt") == "now with new text\n"
    assert sh(teacher, sandbox, "test -e data/numbers.txt || echo gone") == "gone\n"
    # Untracked work was kept (and saved in a commit); ignored files left alone.
    assert sh(teacher, sandbox, "cat scratch.py run.log") == "scratch\ndebug\n"
    assert sh(teacher, sandbox, "git status --porcelain") == ""
    assert sh(teacher, sandbox, "git ls-files run.log") == ""
    subjects = sh(teacher, sandbox, "git log --format=%s").splitlines()
    assert subjects[:2] == [
        f"Merge starter update {new_head[:7]} (conflicts kept aside)",
        "Save my work before the starter update",
    ]
    assert sh(teacher, sandbox, "stat -c %U hello.starter.py lesson2.py") == "sandbox\n" * 2

    # Again: nothing new.
    again = ok(teacher.post(f"/sandboxes/{sid}/starter/update"))
    assert (again["status"], again["conflicts"]) == ("up_to_date", [])

    # Another student edit, and a starter change elsewhere in the same file merges
    # cleanly (no conflict: different lines).
    sh(teacher, sandbox, "printf '# my comment\\n' >> README.md")
    write(repo, {"README.md": "# Lesson 1 (v3)\n\nUpdated instructions.\n"})
    third = commit(repo, "v3")
    ok(teacher.post(f"/templates/{template['id']}/refresh"))
    report = ok(teacher.post(f"/sandboxes/{sid}/starter/update"))
    assert (report["status"], report["head"], report["conflicts"]) == ("updated", third, [])
    assert sh(teacher, sandbox, "cat README.md") == (
        "# Lesson 1 (v3)\n\nUpdated instructions.\n# my comment\n"
    )

    # Only the owner may update; a sandbox not made from a template cannot be.
    with tserver.client("intruder") as other:
        assert error(other.post(f"/sandboxes/{sid}/starter/update"), 404)["code"] == "not_found"
    plain = ok(teacher.post("/sandboxes", json={"name": name("plain")}), 201)
    body = error(teacher.post(f"/sandboxes/{plain['id']}/starter/update"), 400)
    assert body["code"] == "no_template"
