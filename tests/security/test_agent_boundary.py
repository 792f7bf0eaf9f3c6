"""The agent boundary, attacked from inside a sandbox and through the public API.

A tenant's code must not be able to send the server to another sandbox's agent, to
stop, pause, trace or reconfigure its own agent, to switch off or outrun the disk
quota, or to write a byte onto the host outside its quota.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server import LiveServer, running_server

AGENT = "$(pgrep -of '^python3 (-S )?-m sandbox_agent')"


def run(api: httpx.Client, sandbox_id: str, command: str) -> dict:
    response = api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": command, "timeout": 60})
    assert response.status_code == 200, response.text
    return response.json()


def create(api: httpx.Client, **fields: object) -> dict:
    response = api.post("/sandboxes", json={"keep_alive": True, **fields})
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture(scope="module")
def attacker(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client("mallory") as client:
        yield client


def test_a_planted_link_does_not_send_the_server_to_another_sandbox(
    server: LiveServer, attacker: httpx.Client
) -> None:
    with server.client("victim") as victim:
        target = create(victim, name="victim-box")
        victim.put(
            f"/sandboxes/{target['id']}/files/content",
            params={"path": "diary.txt"},
            content=b"victim's secret",
        ).raise_for_status()
    own = create(attacker, name="attack-box")
    planted = run(
        attacker,
        own["id"],
        f"cd /run/sandbox-agent && ln -s ../{target['id']}/agent.sock x && mv -f x agent.sock",
    )
    assert planted["exit_code"] != 0
    assert "Permission denied" in planted["stderr"]
    # The attacker's next calls still run in the attacker's own sandbox.
    assert run(attacker, own["id"], "cat /workspace/diary.txt")["exit_code"] != 0
    listing = attacker.get(f"/sandboxes/{own['id']}/files", params={"path": "/workspace"})
    assert "diary.txt" not in listing.text
    # Nothing of the attacker's reached the host directory behind the socket.
    agent_dir = server.var_dir / "run" / own["id"]
    assert sorted(p.name for p in agent_dir.iterdir()) == ["agent.sock"]


def test_sandbox_code_cannot_reach_the_agent_socket(attacker: httpx.Client) -> None:
    own = create(attacker, name="socket-box")
    probe = run(
        attacker,
        own["id"],
        'python3 -c "import socket; s=socket.socket(socket.AF_UNIX); '
        "s.connect('/run/sandbox-agent/agent.sock')\"",
    )
    assert probe["exit_code"] != 0 and "PermissionError" in probe["stderr"]


def test_sandbox_code_cannot_stop_pause_trace_or_read_its_agent(attacker: httpx.Client) -> None:
    own = create(attacker, name="signal-box")
    sandbox_id = own["id"]
    for attempt in (
        f"kill -STOP {AGENT}",
        f"kill -KILL {AGENT}",
        f"kill -TERM {AGENT}",
        f"cat /proc/{AGENT}/environ",
        # the newest match is one of the agent's launchers (or the agent itself)
        "kill -KILL $(pgrep -nf '^python3 (-S )?-m sandbox_agent')",
        f"cat /proc/{AGENT}/mem",
        # PTRACE_ATTACH (16) and PTRACE_SEIZE (0x4206) through libc
        f'python3 -c "import ctypes,sys; libc=ctypes.CDLL(None, use_errno=True); '
        f"sys.exit(0 if libc.ptrace(16, {AGENT}, 0, 0) == 0 or "
        f'libc.ptrace(0x4206, {AGENT}, 0, 0) == 0 else 1)"',
    ):
        result = run(attacker, sandbox_id, attempt)
        assert result["exit_code"] != 0, (attempt, result)
    # The agent is alive and unchanged: the same process answers.
    before = run(attacker, sandbox_id, f"echo {AGENT}")["stdout"]
    time.sleep(0.5)
    assert run(attacker, sandbox_id, f"echo {AGENT}")["stdout"] == before
    assert run(attacker, sandbox_id, "echo alive")["stdout"] == "alive\n"
    # It holds no capability, and nothing it starts can gain one.
    caps = run(attacker, sandbox_id, f"grep -E '^Cap(Prm|Eff|Bnd)' /proc/{AGENT}/status")
    assert [line.split()[1] for line in caps["stdout"].splitlines()] == ["0" * 16] * 3
    # The agent's code is not the user's to replace.
    replace = run(
        attacker,
        sandbox_id,
        "echo 'import os' > /usr/lib/python3/dist-packages/sandbox_agent/server.py",
    )
    assert replace["exit_code"] != 0


def _uids_of(text: str) -> tuple[list[str], str, str]:
    """Real, effective and saved uid, and the permitted and effective capabilities,
    from a /proc/PID/status."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return fields["Uid"].split()[:3], fields["CapPrm"].strip(), fields["CapEff"].strip()


def test_every_program_runs_wholly_as_the_sandbox_user(attacker: httpx.Client) -> None:
    """Real, effective and saved uid are all the user's (no way back to uid 0) and no
    capability is left, whichever way a program was started."""
    own = create(attacker, name="uid-box")
    sandbox_id = own["id"]
    expected = (["1000", "1000", "1000"], "0000000000000000", "0000000000000000")
    by_exec = run(attacker, sandbox_id, "cat /proc/self/status")["stdout"]
    assert _uids_of(by_exec) == expected
    started = attacker.post(
        f"/sandboxes/{sandbox_id}/processes",
        json={"command": "cat /proc/self/status; sleep 30"},
    )
    assert started.status_code in (200, 201), started.text
    deadline = time.monotonic() + 10
    logs = ""
    while "CapEff" not in logs and time.monotonic() < deadline:
        time.sleep(0.2)
        logs = attacker.get(
            f"/sandboxes/{sandbox_id}/processes/{started.json()['pid']}/logs"
        ).json()["stdout"]
    assert _uids_of(logs) == expected
    code = attacker.post(
        f"/sandboxes/{sandbox_id}/code/run",
        json={"code": "import os; print(os.getresuid())", "language": "python"},
    )
    assert code.status_code == 200, code.text
    assert "(1000, 1000, 1000)" in code.text
    # A program cannot take uid 0 back.
    back = run(attacker, sandbox_id, "python3 -c 'import os; os.setuid(0)'")
    assert back["exit_code"] != 0 and "PermissionError" in back["stderr"]


@pytest.mark.parametrize(
    "path,method,body",
    [
        ("/sandboxes", "post", {"env": {"SANDBOX_AGENT_DISK_ROOTS": "/none"}}),
        ("/sandboxes", "post", {"env": {"sandbox_agent_key": "00"}}),
        ("/templates", "post", {"name": "t-reserved", "env": {"SANDBOX_AGENT_DISK_QUOTA": "0"}}),
    ],
)
def test_the_agents_configuration_is_refused_from_tenants(
    attacker: httpx.Client, path: str, method: str, body: dict
) -> None:
    response = getattr(attacker, method)(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "reserved_env"
    assert "SANDBOX_AGENT_" in response.json()["error"]["message"]


def test_reserved_env_is_refused_on_patch_and_exec(attacker: httpx.Client) -> None:
    own = create(attacker, name="patch-box")
    patched = attacker.patch(
        f"/sandboxes/{own['id']}", json={"env": {"SANDBOX_AGENT_DISK_QUOTA": "0"}}
    )
    assert patched.status_code == 400 and patched.json()["error"]["code"] == "reserved_env"
    execed = attacker.post(
        f"/sandboxes/{own['id']}/exec",
        json={"command": "true", "env": {"SANDBOX_AGENT_KEY": "00"}},
    )
    assert execed.status_code == 400 and execed.json()["error"]["code"] == "reserved_env"


@pytest.fixture(scope="module")
def small_quota(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxquota", {"SANDBOX_DISK_QUOTA": "64m"}) as server:
        yield server


def test_the_disk_quota_cannot_be_switched_off_or_outrun(small_quota: LiveServer) -> None:
    with small_quota.client("mallory") as api:
        refused = api.post("/sandboxes", json={"env": {"SANDBOX_AGENT_DISK_ROOTS": "/none"}})
        assert refused.status_code == 400
        own = create(api, name="quota-box")
        # The quota is kept by the agent, which user code can neither stop nor pause.
        run(api, own["id"], f"kill -STOP {AGENT} 2>/dev/null; fallocate -l 200M /workspace/big")
        deadline = time.monotonic() + 20
        disk: dict = {}
        while time.monotonic() < deadline:
            disk = api.get(f"/sandboxes/{own['id']}").json().get("disk") or {}
            if disk.get("exceeded"):
                break
            time.sleep(0.5)
        assert disk.get("exceeded") is True, disk
        over = api.put(
            f"/sandboxes/{own['id']}/files/content",
            params={"path": "more.txt"},
            content=b"x" * 1024,
        )
        assert over.status_code == 507 and over.json()["error"]["code"] == "disk_quota_exceeded"


def test_no_tenant_byte_lands_in_the_hosts_agent_directory(
    server: LiveServer, attacker: httpx.Client
) -> None:
    own = create(attacker, name="fill-box")
    filled = run(
        attacker,
        own["id"],
        "fallocate -l 1G /run/sandbox-agent/fill; touch /run/sandbox-agent/x; "
        "mkdir /run/sandbox-agent/d",
    )
    assert filled["exit_code"] != 0
    assert filled["stderr"].count("Permission denied") == 3, filled["stderr"]
    agent_dir = server.var_dir / "run" / own["id"]
    assert sorted(p.name for p in agent_dir.iterdir()) == ["agent.sock"]
