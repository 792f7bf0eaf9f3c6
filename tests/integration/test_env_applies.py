"""A sandbox's environment changed with PATCH reaches what starts after it, without a
restart (docs/api.md, Sandboxes): execs, processes, terminals and sessions."""

from __future__ import annotations

import time

import httpx
from websockets.sync.client import connect

from tests.server import LiveServer


def printenv(api: httpx.Client, sid: str, *names: str) -> str:
    command = "; ".join(f'echo "{n}=${{{n}-unset}}"' for n in names)
    response = api.post(f"/sandboxes/{sid}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return str(response.json()["stdout"])


def test_patched_env_applies_to_what_starts_after(server: LiveServer, api: httpx.Client) -> None:
    created = api.post(
        "/sandboxes", json={"name": "env-applies", "env": {"STAGE": "one", "GONE": "soon"}}
    )
    assert created.status_code in (200, 201), created.text
    sid = created.json()["id"]
    assert created.json()["settings_apply"]["env"] == "new_programs"
    assert printenv(api, sid, "STAGE", "GONE") == "STAGE=one\nGONE=soon\n"
    before = api.post(
        f"/sandboxes/{sid}/processes", json={"command": "sleep 1; echo before=$STAGE"}
    ).json()

    patched = api.patch(f"/sandboxes/{sid}", json={"env": {"STAGE": "two", "NEW": "yes"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["env"] == {"STAGE": "two", "NEW": "yes"}

    # an exec right after: the new values, and a removed variable is gone
    assert printenv(api, sid, "STAGE", "NEW", "GONE") == "STAGE=two\nNEW=yes\nGONE=unset\n"
    # a per-call env still wins over the sandbox's
    response = api.post(
        f"/sandboxes/{sid}/exec", json={"command": "echo $STAGE", "env": {"STAGE": "mine"}}
    )
    assert response.json()["stdout"] == "mine\n"

    # a process started after
    process = api.post(
        f"/sandboxes/{sid}/processes", json={"command": "echo process=$STAGE/$NEW"}
    ).json()
    deadline = time.monotonic() + 30
    while (
        "process="
        not in (logs := api.get(f"/sandboxes/{sid}/processes/{process['pid']}/logs").json())[
            "stdout"
        ]
    ):
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)
    assert logs["stdout"] == "process=two/yes\n"
    # one already running keeps what it started with
    deadline = time.monotonic() + 30
    while (
        "before="
        not in (old := api.get(f"/sandboxes/{sid}/processes/{before['pid']}/logs").json())["stdout"]
    ):
        assert time.monotonic() < deadline, old
        time.sleep(0.2)
    assert old["stdout"] == "before=one\n"

    # a session created after
    session = api.post(f"/sandboxes/{sid}/sessions", json={"id": "after"}).json()
    assert session["env"]["STAGE"] == "two" and "GONE" not in session["env"]

    # a terminal opened after
    url = server.url.replace("http://", "ws://", 1)
    with connect(
        f"{url}/ws/sandboxes/{sid}/terminals/envcheck?token={server.token('alice')}",
        open_timeout=60,
    ) as ws:
        ws.send(b"echo term=$STAGE-$NEW-${GONE-unset}\n")
        seen = b""
        deadline = time.monotonic() + 30
        while b"term=two-yes-unset" not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                seen += message

    # reserved names are still refused, and nothing changed
    refused = api.patch(f"/sandboxes/{sid}", json={"env": {"SANDBOX_AGENT_KEY": "x"}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "reserved_env"
    assert printenv(api, sid, "STAGE") == "STAGE=two\n"
    assert api.get(f"/sandboxes/{sid}").json()["env"] == {"STAGE": "two", "NEW": "yes"}

    # the change outlives a full stop (the container keeps its creation environment)
    slept = api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"})
    assert slept.status_code == 200, slept.text
    assert printenv(api, sid, "STAGE", "GONE") == "STAGE=two\nGONE=unset\n"
    assert api.get(f"/sandboxes/{sid}").json()["settings_apply"] == {
        "env": "new_programs",
        "sleep_after": "now",
        "keep_alive": "now",
        "egress": "now",
    }
    api.delete(f"/sandboxes/{sid}")
