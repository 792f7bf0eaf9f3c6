"""The sandbox actions (lifecycle, execs, the policy seam) on a fake backend (the real
agent as a local process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User

from sandboxes import lifecycle, policy
from sandboxes.errors import Forbidden, NotFound, SandboxUnavailable
from sandboxes.execs import ExecRequest, ExecResult, Text, exec_collect, text_events
from sandboxes.locks import KeyedLocks
from sandboxes.models import Sandbox
from tests.fakes import LocalAgentBackend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def user() -> User:
    return await User.objects.acreate(username="unit")


async def run(sandbox: Sandbox, command: str | list[str], **kwargs: object) -> ExecResult:
    return await exec_collect(sandbox, ExecRequest(command=command, **kwargs))


async def test_create_runs_and_execs(backend: LocalAgentBackend, user: User) -> None:
    sandbox, created = await lifecycle.get_or_create_sandbox(
        user, lifecycle.SandboxSettings(name="one", env={"WHO": "unit"})
    )
    assert created and sandbox.status == Sandbox.Status.RUNNING
    result = await run(sandbox, "echo $WHO; pwd")
    assert result.stdout.splitlines()[0] == "unit"
    assert result.stdout.splitlines()[1].endswith("/workspace")
    again, created_again = await lifecycle.get_or_create_sandbox(
        user, lifecycle.SandboxSettings(name="one")
    )
    assert again.id == sandbox.id and not created_again


async def test_concurrent_get_or_create_provisions_once(
    backend: LocalAgentBackend, user: User
) -> None:
    results = await asyncio.gather(
        *[
            lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="race"))
            for _ in range(5)
        ]
    )
    assert len({sandbox.id for sandbox, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert [name for name, _ in backend.calls].count("create") == 1
    assert await Sandbox.objects.filter(name="race").acount() == 1


async def test_stopped_sandbox_wakes_on_next_exec(backend: LocalAgentBackend, user: User) -> None:
    sandbox, _ = await lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="nap"))
    await run(sandbox, "echo kept > note")
    await lifecycle.sleep_sandbox(sandbox)
    assert (await Sandbox.objects.aget(pk=sandbox.pk)).status == Sandbox.Status.SLEEPING
    assert (await run(sandbox, "cat note")).stdout == "kept\n"
    assert (await Sandbox.objects.aget(pk=sandbox.pk)).status == Sandbox.Status.RUNNING


async def test_container_stopped_behind_our_back_is_restarted(
    backend: LocalAgentBackend, user: User
) -> None:
    sandbox, _ = await lifecycle.get_or_create_sandbox(
        user, lifecycle.SandboxSettings(name="crash")
    )
    await backend.stop(sandbox.backend_state)  # the row still says running
    assert (await run(sandbox, ["echo", "back"])).stdout == "back\n"


async def test_vanished_container_is_recreated_and_says_so(
    backend: LocalAgentBackend, user: User
) -> None:
    sandbox, _ = await lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="gone"))
    backend.vanish(sandbox.backend_state)
    assert (await run(sandbox, "true")).exit_code == 0
    refreshed = await Sandbox.objects.aget(pk=sandbox.pk)
    assert "recreated" in refreshed.status_detail
    assert [name for name, _ in backend.calls].count("create") == 2


async def test_agent_that_never_answers_is_an_error(backend: LocalAgentBackend, user: User) -> None:
    backend.broken_agent = True
    with pytest.raises(SandboxUnavailable, match="did not answer"):
        await lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="broken"))
    row = await Sandbox.objects.aget(name="broken")
    assert row.status == Sandbox.Status.ERROR and "did not answer" in row.status_detail


async def test_other_users_sandbox_is_not_found(backend: LocalAgentBackend, user: User) -> None:
    sandbox, _ = await lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="mine"))
    other = await User.objects.acreate(username="other")
    with pytest.raises(NotFound):
        await lifecycle.get_sandbox(other, sandbox.id)
    assert await lifecycle.list_sandboxes(other) == []


async def test_destroy_removes_everything(backend: LocalAgentBackend, user: User) -> None:
    sandbox, _ = await lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="bye"))
    state = dict(sandbox.backend_state)
    await lifecycle.destroy_sandbox(sandbox)
    assert await backend.status(state) == "missing"
    assert not await Sandbox.objects.filter(pk=sandbox.pk).aexists()


async def test_hand_over_moves_a_sandbox_once(backend: LocalAgentBackend, user: User) -> None:
    pool = await User.objects.acreate(username="pool", is_active=False)
    sandbox, _ = await lifecycle.get_or_create_sandbox(
        pool, lifecycle.SandboxSettings(name="ready", keep_alive=True)
    )
    taken = await lifecycle.hand_over(sandbox.id, pool, user, "mine")
    assert taken is not None
    assert (taken.owner_id, taken.name, taken.keep_alive) == (user.pk, "mine", False)
    assert await lifecycle.hand_over(sandbox.id, pool, user, "again") is None


async def test_the_policy_asks_registered_rules_for_non_owners(
    backend: LocalAgentBackend, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await User.objects.acreate(username="other")
    sandbox, _ = await lifecycle.get_or_create_sandbox(user, lifecycle.SandboxSettings(name="p"))
    monkeypatch.setattr(policy, "_rules", [])
    assert await policy.may(user, "manage", sandbox)
    assert not await policy.may(other, "view", sandbox)

    async def no_opinion(who: object, action: policy.Action, target: Sandbox) -> bool | None:
        return None

    async def viewers(who: object, action: policy.Action, target: Sandbox) -> bool | None:
        return True if action == "view" else None

    policy.register(no_opinion)
    policy.register(viewers)
    assert await policy.may(other, "view", sandbox)
    assert not await policy.may(other, "use", sandbox)
    assert (await lifecycle.get_sandbox(other, sandbox.id, action="view")).pk == sandbox.pk
    with pytest.raises(Forbidden):
        await lifecycle.get_sandbox(other, sandbox.id)  # looking is not using


@dataclass
class Chunk:
    kind: str
    data: bytes = b""


async def test_text_events_decode_across_chunks_and_flush_before_exit() -> None:
    euro = "€".encode()

    async def chunks() -> AsyncGenerator[Chunk, None]:
        yield Chunk("started")
        yield Chunk("stdout", b"a" + euro[:1])
        yield Chunk("stdout", euro[1:] + b"b")
        yield Chunk("stderr", euro[:2])
        yield Chunk("exit")

    got = [item async for item in text_events(chunks())]
    assert got[:-1] == [Text("stdout", "a"), Text("stdout", "€b"), Text("stderr", "\ufffd")]
    assert isinstance(got[-1], Chunk) and got[-1].kind == "exit"


async def test_keyed_locks_are_one_per_key_while_used() -> None:
    locks = KeyedLocks()
    first = locks("a")
    assert locks("a") is first and locks("b") is not first
    async with first:
        assert locks.held("a") and not locks.held("b")
    assert not locks.held("a")
