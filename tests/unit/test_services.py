"""The service layer on a fake backend (the real agent as a local process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from django.contrib.auth.models import User

from sandboxes import services
from sandboxes.backends import get_backend
from sandboxes.errors import NotFound, SandboxUnavailable
from sandboxes.images import image_tag
from sandboxes.models import Sandbox
from tests.fakes import LocalAgentBackend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def backend(settings: object) -> AsyncIterator[LocalAgentBackend]:
    settings.SANDBOX_BACKEND = "tests.fakes.LocalAgentBackend"  # type: ignore[attr-defined]
    settings.SANDBOX_START_TIMEOUT = 2.0  # type: ignore[attr-defined]
    settings.SANDBOX_IMAGE = "fake-image"  # type: ignore[attr-defined]
    get_backend.cache_clear()
    image_tag.cache_clear()
    backend = get_backend()
    assert isinstance(backend, LocalAgentBackend)
    yield backend
    for process in list(backend.processes.values()):
        process.kill()
    get_backend.cache_clear()
    image_tag.cache_clear()  # the real tag again for whoever asks next


@pytest.fixture
async def user() -> User:
    return await User.objects.acreate(username="unit")


async def run(sandbox: Sandbox, command: str | list[str], **kwargs: object) -> services.ExecResult:
    return await services.exec_collect(sandbox, services.ExecRequest(command=command, **kwargs))


async def test_create_runs_and_execs(backend: LocalAgentBackend, user: User) -> None:
    sandbox, created = await services.get_or_create_sandbox(
        user, services.SandboxSettings(name="one", env={"WHO": "unit"})
    )
    assert created and sandbox.status == Sandbox.Status.RUNNING
    result = await run(sandbox, "echo $WHO; pwd")
    assert result.stdout.splitlines()[0] == "unit"
    assert result.stdout.splitlines()[1].endswith("/workspace")
    again, created_again = await services.get_or_create_sandbox(
        user, services.SandboxSettings(name="one")
    )
    assert again.id == sandbox.id and not created_again


async def test_concurrent_get_or_create_provisions_once(
    backend: LocalAgentBackend, user: User
) -> None:
    results = await asyncio.gather(
        *[
            services.get_or_create_sandbox(user, services.SandboxSettings(name="race"))
            for _ in range(5)
        ]
    )
    assert len({sandbox.id for sandbox, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert [name for name, _ in backend.calls].count("create") == 1
    assert await Sandbox.objects.filter(name="race").acount() == 1


async def test_stopped_sandbox_wakes_on_next_exec(backend: LocalAgentBackend, user: User) -> None:
    sandbox, _ = await services.get_or_create_sandbox(user, services.SandboxSettings(name="nap"))
    await run(sandbox, "echo kept > note")
    await services.sleep_sandbox(sandbox)
    assert (await Sandbox.objects.aget(pk=sandbox.pk)).status == Sandbox.Status.SLEEPING
    assert (await run(sandbox, "cat note")).stdout == "kept\n"
    assert (await Sandbox.objects.aget(pk=sandbox.pk)).status == Sandbox.Status.RUNNING


async def test_container_stopped_behind_our_back_is_restarted(
    backend: LocalAgentBackend, user: User
) -> None:
    sandbox, _ = await services.get_or_create_sandbox(user, services.SandboxSettings(name="crash"))
    await backend.stop(sandbox.backend_state)  # the row still says running
    assert (await run(sandbox, ["echo", "back"])).stdout == "back\n"


async def test_vanished_container_is_recreated_and_says_so(
    backend: LocalAgentBackend, user: User
) -> None:
    sandbox, _ = await services.get_or_create_sandbox(user, services.SandboxSettings(name="gone"))
    backend.vanish(sandbox.backend_state)
    assert (await run(sandbox, "true")).exit_code == 0
    refreshed = await Sandbox.objects.aget(pk=sandbox.pk)
    assert "recreated" in refreshed.status_detail
    assert [name for name, _ in backend.calls].count("create") == 2


async def test_agent_that_never_answers_is_an_error(backend: LocalAgentBackend, user: User) -> None:
    backend.broken_agent = True
    with pytest.raises(SandboxUnavailable, match="did not answer"):
        await services.get_or_create_sandbox(user, services.SandboxSettings(name="broken"))
    row = await Sandbox.objects.aget(name="broken")
    assert row.status == Sandbox.Status.ERROR and "did not answer" in row.status_detail


async def test_other_users_sandbox_is_not_found(backend: LocalAgentBackend, user: User) -> None:
    sandbox, _ = await services.get_or_create_sandbox(user, services.SandboxSettings(name="mine"))
    other = await User.objects.acreate(username="other")
    with pytest.raises(NotFound):
        await services.get_sandbox(other, sandbox.id)
    assert await services.list_sandboxes(other) == []


async def test_destroy_removes_everything(backend: LocalAgentBackend, user: User) -> None:
    sandbox, _ = await services.get_or_create_sandbox(user, services.SandboxSettings(name="bye"))
    state = dict(sandbox.backend_state)
    await services.destroy_sandbox(sandbox)
    assert await backend.status(state) == "missing"
    assert not await Sandbox.objects.filter(pk=sandbox.pk).aexists()
