"""Sessions (Cloudflare's createSession): `cd` and `export` carry over between execs."""

from __future__ import annotations

import json
import time

import httpx


def sessions(sandbox: dict) -> str:
    return f"/sandboxes/{sandbox['id']}/sessions"


def create(api: httpx.Client, sandbox: dict, **body: object) -> dict:
    response = api.post(sessions(sandbox), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def run(api: httpx.Client, sandbox: dict, session: str | None, command: object, **extra) -> dict:
    body = {"command": command, **extra}
    if session is not None:
        body["session"] = session
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_cd_and_export_carry_over(api: httpx.Client, shared_sandbox: dict) -> None:
    session = create(api, shared_sandbox)
    sid = session["id"]
    assert session["cwd"] == "/workspace" and session["env"]["HOME"] == "/home/sandbox"
    out = run(api, shared_sandbox, sid, "mkdir -p /tmp/sess/a && cd /tmp/sess/a && export X=42")
    assert out["exit_code"] == 0
    out = run(api, shared_sandbox, sid, 'pwd; echo "x=$X"')
    assert out["stdout"] == "/tmp/sess/a\nx=42\n"
    # unset and `cd -` work too
    run(api, shared_sandbox, sid, "unset X; cd ..")
    assert run(api, shared_sandbox, sid, 'pwd; echo "x=${X-unset}"')["stdout"] == (
        "/tmp/sess\nx=unset\n"
    )
    assert run(api, shared_sandbox, sid, "cd -")["stdout"] == "/tmp/sess/a\n"
    # a relative per-call cwd is relative to the session's directory, for that call
    assert run(api, shared_sandbox, sid, "pwd", cwd="..")["stdout"] == "/tmp/sess\n"
    info = api.get(f"{sessions(shared_sandbox)}/{sid}").json()
    assert info["cwd"] == "/tmp/sess/a" and "X" not in info["env"]
    # an exec without the session is untouched by it
    assert run(api, shared_sandbox, None, "pwd; echo ${X-none}")["stdout"] == "/workspace\nnone\n"


def test_sessions_are_isolated(api: httpx.Client, shared_sandbox: dict) -> None:
    one = create(api, shared_sandbox, id="one", env={"WHO": "first"})
    two = create(api, shared_sandbox, id="two", cwd="/tmp", env={"WHO": "second"})
    run(api, shared_sandbox, one["id"], "export ONLY_ONE=yes; cd /home")
    assert run(api, shared_sandbox, two["id"], 'pwd; echo "$WHO ${ONLY_ONE-no}"')["stdout"] == (
        "/tmp\nsecond no\n"
    )
    assert run(api, shared_sandbox, one["id"], 'pwd; echo "$WHO $ONLY_ONE"')["stdout"] == (
        "/home\nfirst yes\n"
    )
    listed = api.get(sessions(shared_sandbox)).json()["sessions"]
    assert {"one", "two"} <= {s["id"] for s in listed}
    again = api.post(sessions(shared_sandbox), json={"id": "one"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_exists"
    assert api.delete(f"{sessions(shared_sandbox)}/two").status_code == 204
    assert api.get(f"{sessions(shared_sandbox)}/two").status_code == 404
    gone = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec", json={"command": "pwd", "session": "two"}
    )
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_exit_codes_streams_and_timeouts_as_exec(api: httpx.Client, shared_sandbox: dict) -> None:
    sid = create(api, shared_sandbox)["id"]
    out = run(api, shared_sandbox, sid, "cd /tmp; export A=1; echo out; echo err >&2; exit 7")
    assert out["exit_code"] == 7 and out["stdout"] == "out\n" and out["stderr"] == "err\n"
    assert run(api, shared_sandbox, sid, "pwd; echo $A")["stdout"] == "/tmp\n1\n"  # kept
    started = time.monotonic()
    slow = run(api, shared_sandbox, sid, "cd /; export A=2; sleep 30", timeout=0.5)
    assert slow["timed_out"] is True and slow["exit_code"] is None
    assert time.monotonic() - started < 10
    # killed before its end: the state stays as it was
    assert run(api, shared_sandbox, sid, "pwd; echo $A")["stdout"] == "/tmp\n1\n"
    # syntax errors keep the state and report bash's exit code 2
    bad = run(api, shared_sandbox, sid, "cd /usr; if then")
    assert bad["exit_code"] == 2 and "syntax error" in bad["stderr"]
    assert run(api, shared_sandbox, sid, "pwd")["stdout"] == "/tmp\n"
    # argv commands run in the session's cwd and env
    assert run(api, shared_sandbox, sid, ["sh", "-c", "pwd; echo $A"])["stdout"] == "/tmp\n1\n"
    # per-call env and cwd apply to that call only
    once = run(api, shared_sandbox, sid, "pwd; echo $A", env={"A": "call"}, cwd="/home")
    assert once["stdout"] == "/home\ncall\n"
    assert run(api, shared_sandbox, sid, "pwd; echo $A")["stdout"] == "/tmp\n1\n"
    # stdin still works
    assert run(api, shared_sandbox, sid, "cat", stdin="piped")["stdout"] == "piped"
    # streamed exec in a session
    with api.stream(
        "POST",
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "for i in 1 2; do echo s$i; sleep 0.3; done; cd /var", "session": sid},
        headers={"Accept": "text/event-stream"},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    assert "".join(e.get("data", "") for e in events[:-1]) == "s1\ns2\n"
    assert events[-1]["exit_code"] == 0
    assert run(api, shared_sandbox, sid, "pwd")["stdout"] == "/var\n"


def test_session_errors(api: httpx.Client, shared_sandbox: dict) -> None:
    bad_id = api.post(sessions(shared_sandbox), json={"id": "Not Valid"})
    assert bad_id.status_code == 400
    bad_cwd = api.post(sessions(shared_sandbox), json={"cwd": "/does/not/exist"})
    assert bad_cwd.status_code == 404
    bad_env = api.post(sessions(shared_sandbox), json={"env": {"A=B": "x"}})
    assert bad_env.status_code == 400
    unknown = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec", json={"command": "true", "session": "nope"}
    )
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    assert api.delete(f"{sessions(shared_sandbox)}/nope").status_code == 404
    assert api.post("/sandboxes/nosuchsandbox/sessions", json={}).status_code == 404
