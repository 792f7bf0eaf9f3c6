"""Git (docs/api.md, Git, and the source-control routes) in a real sandbox.

There is no internet here: the remotes are bare repositories made inside the
sandbox, reached by file:// URLs, and for credentials a small HTTP server (in the
sandbox, a background process) that serves one over git's "dumb" HTTP protocol
behind Basic authentication.
"""

from __future__ import annotations

import time

import httpx
import pytest

SRC = "/tmp/gitsrc"
ORIGIN = f"file://{SRC}/origin.git"
PASSWORD = "s3cret-Pa55word"
TOKEN = "tok-7f3a9c2e1b"

SETUP = f"""
set -e
rm -rf {SRC} && mkdir -p {SRC} && cd {SRC}
git init -q --bare -b main origin.git
git clone -q origin.git seed 2>/dev/null
cd seed
git config user.name Seeder && git config user.email seed@example.com
printf 'hello\\n' > README.md && printf 'keep\\n' > keep.txt && printf 'bye\\n' > gone.txt
git add . && git commit -qm "first commit"
printf 'more\\n' >> README.md && git commit -qam "second commit"
git push -q origin main
git checkout -qb dev && printf 'dev\\n' > dev.txt && git add dev.txt && git commit -qm "dev work"
git push -q origin dev
cd {SRC} && git clone -q --bare origin.git private.git && git -C private.git update-server-info
"""

AUTH_SERVER = f"""
import base64, functools, http.server
GOOD = {{
    "Basic " + base64.b64encode(b"alice:{PASSWORD}").decode(),
    "Basic " + base64.b64encode(b"x-access-token:{TOKEN}").decode(),
}}
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") not in GOOD:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
http.server.ThreadingHTTPServer(
    ("127.0.0.1", 8771), functools.partial(Handler, directory="{SRC}")
).serve_forever()
"""


def sh(api: httpx.Client, sandbox: dict, command: str, **extra: object) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def git_post(api: httpx.Client, sandbox: dict, op: str, **body: object) -> httpx.Response:
    return api.post(f"/sandboxes/{sandbox['id']}/git/{op}", json=body)


def git_get(api: httpx.Client, sandbox: dict, op: str, **params: object) -> httpx.Response:
    return api.get(f"/sandboxes/{sandbox['id']}/git/{op}", params=params)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def repo(api: httpx.Client, shared_sandbox: dict) -> dict:
    out = sh(api, shared_sandbox, SETUP + "\ngit -C /tmp/gitsrc/origin.git rev-parse main dev")
    assert out["exit_code"] == 0, out["stderr"]
    main, dev = out["stdout"].split()
    sh(api, shared_sandbox, "rm -rf /workspace/gitrepos && mkdir -p /workspace/gitrepos")
    return {"main": main, "dev": dev}


def test_clone_status_diff_add_commit_log_push_pull(
    api: httpx.Client, shared_sandbox: dict, repo: dict
) -> None:
    cloned = ok(git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/one"))
    assert cloned == {"path": "/workspace/gitrepos/one", "branch": "main", "commit": repo["main"]}
    path = cloned["path"]
    clean = ok(git_get(api, shared_sandbox, "status", path=path))
    assert clean["branch"] == "main" and clean["commit"] == repo["main"]
    assert clean["ahead"] == 0 and clean["behind"] == 0 and clean["files"] == []
    assert clean["upstream"] == "origin/main" and clean["clean"] is True

    sh(
        api,
        shared_sandbox,
        "printf 'changed line\\n' >> README.md && rm gone.txt && echo new > new.txt",
        cwd=path,
    )
    status = ok(git_get(api, shared_sandbox, "status", path=path))
    by_path = {f["path"]: f for f in status["files"]}
    assert by_path["README.md"]["status"] == "modified"
    assert by_path["gone.txt"]["status"] == "deleted"
    assert by_path["new.txt"]["status"] == "untracked"
    assert not any(f["staged"] for f in status["files"])
    diff = ok(git_get(api, shared_sandbox, "diff", path=path))["diff"]
    assert "+changed line" in diff and "gone.txt" in diff
    only_readme = ok(git_get(api, shared_sandbox, "diff", path=f"{path}/README.md"))["diff"]
    assert "+changed line" in only_readme and "gone.txt" not in only_readme
    assert ok(git_get(api, shared_sandbox, "diff", path=path, staged=1))["diff"] == ""

    staged = ok(git_post(api, shared_sandbox, "add", path=path, paths=["README.md", "new.txt"]))
    by_path = {f["path"]: f for f in staged["files"]}
    assert by_path["README.md"]["staged"] and by_path["new.txt"]["status"] == "added"
    assert by_path["gone.txt"]["staged"] is False
    assert "+changed line" in ok(git_get(api, shared_sandbox, "diff", path=path, staged=1))["diff"]

    made = ok(
        git_post(
            api,
            shared_sandbox,
            "commit",
            path=path,
            message="Edit the readme\n\nWith a body.",
            author_name="Ada Lovelace",
            author_email="ada@example.com",
        )
    )
    assert made["branch"] == "main" and made["summary"] == "Edit the readme"
    log = ok(git_get(api, shared_sandbox, "log", path=path, limit=2))["commits"]
    assert [c["summary"] for c in log] == ["Edit the readme", "second commit"]
    assert log[0]["commit"] == made["commit"] and log[0]["author_name"] == "Ada Lovelace"
    assert log[0]["parents"] == [repo["main"]]
    assert ok(git_get(api, shared_sandbox, "status", path=path))["ahead"] == 1

    # no identity given or configured by the user: the sandbox's default commits
    ok(git_post(api, shared_sandbox, "add", path=path))  # everything: the deletion too
    default = ok(git_post(api, shared_sandbox, "commit", path=path, message="Remove gone.txt"))
    first = ok(git_get(api, shared_sandbox, "log", path=path, limit=1))["commits"][0]
    assert first["commit"] == default["commit"]
    assert (first["author_name"], first["author_email"]) == ("Sandbox User", "sandbox@localhost")
    # ... in a terminal too
    shell = sh(
        api,
        shared_sandbox,
        "cd $(mktemp -d) && git init -q && git commit -q --allow-empty -m t "
        "&& git log -1 --format=%ae",
    )
    assert shell["stdout"] == "sandbox@localhost\n", shell["stderr"]

    pushed = ok(git_post(api, shared_sandbox, "push", path=path))
    assert pushed["commit"] == default["commit"]
    remote_main = sh(api, shared_sandbox, f"git -C {SRC}/origin.git rev-parse main")["stdout"]
    assert remote_main.strip() == default["commit"]
    assert ok(git_get(api, shared_sandbox, "status", path=path))["ahead"] == 0

    # a second clone pushes; the first pulls it
    other = ok(git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/two"))["path"]
    sh(api, shared_sandbox, "echo from-two > two.txt", cwd=other)
    ok(git_post(api, shared_sandbox, "add", path=other, paths=["two.txt"]))
    theirs = ok(git_post(api, shared_sandbox, "commit", path=other, message="From two"))
    ok(git_post(api, shared_sandbox, "push", path=other))
    pulled = ok(git_post(api, shared_sandbox, "pull", path=path))
    assert pulled["commit"] == theirs["commit"]
    assert sh(api, shared_sandbox, "cat two.txt", cwd=path)["stdout"] == "from-two\n"

    # nothing staged now
    nothing = git_post(api, shared_sandbox, "commit", path=path, message="empty")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_commit"


def test_clone_branch_and_depth(api: httpx.Client, shared_sandbox: dict, repo: dict) -> None:
    cloned = ok(
        git_post(
            api,
            shared_sandbox,
            "clone",
            url=ORIGIN,
            path="/workspace/gitrepos/shallow",
            branch="dev",
            depth=1,
        )
    )
    assert cloned["branch"] == "dev" and cloned["commit"] == repo["dev"]
    log = ok(git_get(api, shared_sandbox, "log", path=cloned["path"], limit=50))["commits"]
    assert [c["summary"] for c in log] == ["dev work"]  # only the last commit: shallow
    files = sh(api, shared_sandbox, "ls", cwd=cloned["path"])["stdout"].split()
    assert "dev.txt" in files
    # the default path is the repository's name under /workspace
    sh(api, shared_sandbox, "rm -rf /workspace/origin")
    default = ok(git_post(api, shared_sandbox, "clone", url=ORIGIN))
    assert default["path"] == "/workspace/origin"
    sh(api, shared_sandbox, "rm -rf /workspace/origin")


def test_branches_checkout_and_publish(api: httpx.Client, shared_sandbox: dict, repo: dict) -> None:
    cloned = ok(git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/branchy"))
    path = cloned["path"]
    listing = ok(git_get(api, shared_sandbox, "branches", path=path))
    assert listing["current"] == "main"
    assert [b["name"] for b in listing["branches"]] == ["main"]
    assert {"origin/main", "origin/dev"} <= {b["name"] for b in listing["remote_branches"]}

    dev = ok(git_post(api, shared_sandbox, "checkout", path=path, branch="dev"))
    assert dev == {"branch": "dev", "commit": repo["dev"], "summary": None}
    feature = ok(
        git_post(
            api,
            shared_sandbox,
            "checkout",
            path=path,
            branch="feature/x",
            create=True,
            start_point="main",
        )
    )
    assert feature["branch"] == "feature/x" and feature["commit"] == cloned["commit"]
    listing = ok(git_get(api, shared_sandbox, "branches", path=path))
    assert listing["current"] == "feature/x"
    assert {b["name"] for b in listing["branches"]} == {"main", "dev", "feature/x"}
    assert [b["name"] for b in listing["branches"] if b["current"]] == ["feature/x"]

    missing = git_post(api, shared_sandbox, "checkout", path=path, branch="no-such-branch")
    assert missing.status_code == 404, missing.text
    twice = git_post(api, shared_sandbox, "checkout", path=path, branch="dev", create=True)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_exists"

    sh(api, shared_sandbox, "echo x > x.txt", cwd=path)
    ok(git_post(api, shared_sandbox, "add", path=path))
    ok(git_post(api, shared_sandbox, "commit", path=path, message="Feature x"))
    ok(git_post(api, shared_sandbox, "push", path=path))  # first push publishes the branch
    remote = sh(api, shared_sandbox, f"git -C {SRC}/origin.git branch --list 'feature/*'")
    assert remote["stdout"].strip() == "feature/x"
    assert ok(git_get(api, shared_sandbox, "status", path=path))["upstream"] == "origin/feature/x"


def test_errors(api: httpx.Client, shared_sandbox: dict, repo: dict) -> None:
    bad = git_post(api, shared_sandbox, "clone", url="file:///tmp/nowhere.git", path="gitrepos/b")
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["code"] == "git_error"
    assert "does not appear to be a git repository" in error["message"]  # git's own words
    assert sh(api, shared_sandbox, "test -e /workspace/gitrepos/b")["exit_code"] == 1

    sh(api, shared_sandbox, "mkdir -p /workspace/gitrepos/full && touch /workspace/gitrepos/full/f")
    taken = git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/full")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "already_exists"
    sh(api, shared_sandbox, "mkdir -p /workspace/gitrepos/empty")
    ok(git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/empty"))  # empty: fine

    not_repo = git_get(api, shared_sandbox, "status", path="/tmp")
    assert not_repo.status_code == 400 and not_repo.json()["error"]["code"] == "not_a_repository"
    missing = git_get(api, shared_sandbox, "status", path="/workspace/no/such/dir")
    assert missing.status_code == 404
    for body in (
        {},
        {"url": ""},
        {"url": "--upload-pack=touch /tmp/pwned"},
        {"url": ORIGIN, "x": 1},
    ):
        assert git_post(api, shared_sandbox, "clone", **body).status_code == 400, body
    assert git_post(api, shared_sandbox, "clone", url=ORIGIN, depth=0).status_code == 400
    assert git_post(api, shared_sandbox, "checkout", branch="-f").status_code == 400
    assert git_get(api, shared_sandbox, "log", path="/workspace", limit=0).status_code == 400

    # a push the remote rejects (it moved on) is a 409 saying so
    first = ok(git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/r1"))["path"]
    second = ok(git_post(api, shared_sandbox, "clone", url=ORIGIN, path="gitrepos/r2"))["path"]
    for where, name in ((first, "a"), (second, "b")):
        sh(api, shared_sandbox, f"echo {name} > {name}.txt", cwd=where)
        ok(git_post(api, shared_sandbox, "add", path=where))
        ok(git_post(api, shared_sandbox, "commit", path=where, message=f"commit {name}"))
    ok(git_post(api, shared_sandbox, "push", path=first))
    rejected = git_post(api, shared_sandbox, "push", path=second)
    assert rejected.status_code == 409 and rejected.json()["error"]["code"] == "push_rejected"
    behind = ok(git_post(api, shared_sandbox, "pull", path=second))  # merges
    assert ok(git_post(api, shared_sandbox, "push", path=second))["commit"] == behind["commit"]


def test_credentials_reach_git_and_nothing_else(
    api: httpx.Client, shared_sandbox: dict, repo: dict
) -> None:
    sh(api, shared_sandbox, "cat > /tmp/git_auth_server.py", stdin=AUTH_SERVER)
    server = api.post(
        f"/sandboxes/{shared_sandbox['id']}/processes",
        json={"command": ["python3", "/tmp/git_auth_server.py"]},
    )
    assert server.status_code == 201, server.text
    pid = server.json()["pid"]
    try:
        waited = api.post(
            f"/sandboxes/{shared_sandbox['id']}/processes/{pid}/wait-for-port",
            json={"port": 8771, "timeout": 20},
        )
        assert waited.status_code == 200, waited.text
        url = "http://127.0.0.1:8771/private.git"

        anonymous = git_post(api, shared_sandbox, "clone", url=url, path="gitrepos/anon")
        assert anonymous.status_code == 400, anonymous.text
        assert anonymous.json()["error"]["code"] == "git_auth_failed"
        wrong = git_post(
            api,
            shared_sandbox,
            "clone",
            url=url,
            path="gitrepos/wrong",
            username="alice",
            password="not-it",
        )
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "git_auth_failed"
        assert "not-it" not in wrong.text

        started = time.monotonic()
        with_password = git_post(
            api,
            shared_sandbox,
            "clone",
            url=url,
            path="gitrepos/private",
            username="alice",
            password=PASSWORD,
        )
        assert ok(with_password)["commit"] == repo["main"]
        assert time.monotonic() - started < 60
        with_token = ok(
            git_post(api, shared_sandbox, "clone", url=url, path="gitrepos/tok", token=TOKEN)
        )
        assert with_token["commit"] == repo["main"]
        in_url = ok(
            git_post(
                api,
                shared_sandbox,
                "clone",
                path="gitrepos/inurl",
                url=f"http://alice:{PASSWORD}@127.0.0.1:8771/private.git",
            )
        )
        assert in_url["commit"] == repo["main"]
        # fetching again needs them again: nothing was stored
        again = git_post(api, shared_sandbox, "pull", path="/workspace/gitrepos/private")
        assert again.status_code == 400 and again.json()["error"]["code"] == "git_auth_failed"
        pulled = git_post(
            api,
            shared_sandbox,
            "pull",
            path="/workspace/gitrepos/private",
            username="alice",
            password=PASSWORD,
        )
        assert pulled.status_code == 200, pulled.text
    finally:
        api.delete(f"/sandboxes/{shared_sandbox['id']}/processes/{pid}?signal=KILL")

    config = sh(api, shared_sandbox, "cat /workspace/gitrepos/inurl/.git/config")["stdout"]
    assert "url = http://127.0.0.1:8771/private.git" in config and "alice" not in config
    for secret in (PASSWORD, TOKEN):
        found = sh(
            api,
            shared_sandbox,
            f"grep -rl -- '{secret}' /workspace ~/.gitconfig ~/.git-credentials "
            f"~/.config/git /tmp/.git-askpass-* 2>/dev/null; true",
        )
        assert found["stdout"] == "", f"{secret} was written to {found['stdout']}"
    leftovers = sh(api, shared_sandbox, "ls -d /tmp/.git-askpass-* 2>/dev/null | wc -l")
    assert leftovers["stdout"].strip() == "0"
