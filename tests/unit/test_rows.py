"""Sandbox lookups from memory (sandboxes/rows.py): never staler than the last change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from sandboxes import lifecycle, rows
from sandboxes.coordination import coordinator
from sandboxes.errors import NotFound
from sandboxes.models import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty() -> Iterator[None]:
    rows._rows.clear()
    yield
    rows._rows.clear()


class Queries:
    """Statements run on the database thread (where the async ORM runs them) meanwhile."""

    def __init__(self) -> None:
        self.count = 0

    def _counted(self, execute: Any, *args: Any) -> Any:
        self.count += 1
        return execute(*args)

    async def __aenter__(self) -> Queries:
        # the connection is the database thread's: looked up there, not here
        await sync_to_async(lambda: connection.execute_wrappers.append(self._counted))()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await sync_to_async(lambda: connection.execute_wrappers.remove(self._counted))()

    def __len__(self) -> int:
        return self.count


async def _sandbox(name: str = "owner") -> Sandbox:
    user = await sync_to_async(get_user_model().objects.create_user)(name, password="x")
    return await Sandbox.objects.acreate(owner=user, name="box", status=Sandbox.Status.RUNNING)


async def test_a_second_lookup_asks_no_database() -> None:
    box = await _sandbox()
    await rows.find(box.id)
    async with Queries() as queries:
        again = await rows.find(box.id)
    assert len(queries) == 0
    assert again is not None and (again.id, again.owner_id, again.status) == (
        box.id,
        box.owner_id,
        "running",
    )


async def test_every_kind_of_write_is_seen_at_once() -> None:
    box = await _sandbox()
    await rows.find(box.id)
    await Sandbox.objects.filter(pk=box.id).aupdate(status=Sandbox.Status.SLEEPING)
    found = await rows.find(box.id)
    assert found is not None and found.status == "sleeping"

    found.status_detail = "saved"
    await found.asave(update_fields=["status_detail"])
    found = await rows.find(box.id)
    assert found is not None and found.status_detail == "saved"

    await sync_to_async(Sandbox.objects.bulk_update)([Sandbox(pk=box.id, name="renamed")], ["name"])
    found = await rows.find(box.id)
    assert found is not None and found.name == "renamed"

    await found.adelete()
    assert await rows.find(box.id) is None


async def test_a_handed_over_sandbox_leaves_its_old_owner_at_once() -> None:
    box = await _sandbox("giver")
    taker = await sync_to_async(get_user_model().objects.create_user)("taker", password="x")
    giver = await sync_to_async(get_user_model().objects.get)(username="giver")
    assert (await lifecycle.get_sandbox(giver, box.id)).id == box.id  # now in memory
    await lifecycle.hand_over(box.id, giver, taker, "mine")
    with pytest.raises(NotFound):
        await lifecycle.get_sandbox(giver, box.id)
    assert (await lifecycle.get_sandbox(taker, box.id)).name == "mine"


async def test_a_change_in_another_process_is_seen_at_once() -> None:
    box = await _sandbox()
    before = await coordinator().generation(rows.ROWS)
    await Sandbox.objects.filter(pk=box.id).aupdate(status=Sandbox.Status.ERROR)
    assert await coordinator().generation(rows.ROWS) == (before or 0) + 1  # tells the others

    await rows.find(box.id)

    def write_elsewhere() -> None:  # another process: only its bump reaches this one
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE sandboxes_sandbox SET status = 'running' WHERE id = %s", [box.id]
            )

    await sync_to_async(write_elsewhere)()
    coordinator().bump(rows.ROWS)
    found = await rows.find(box.id)
    assert found is not None and found.status == "running"


async def test_activity_alone_keeps_the_copy_and_updates_it() -> None:
    box = await _sandbox()
    found = await rows.find(box.id)
    assert found is not None
    found.last_active_at = timezone.now() - timedelta(hours=1)
    await lifecycle.touch(found)  # writes the mark: an hour is past any resolution
    async with Queries() as queries:
        again = await rows.find(box.id)
    assert len(queries) == 0
    assert again is not None and again.last_active_at == found.last_active_at


async def test_a_caller_changing_its_copy_changes_nobody_elses() -> None:
    box = await _sandbox()
    await Sandbox.objects.filter(pk=box.id).aupdate(env={"A": "1"}, backend_state={"c": "x"})
    first = await rows.find(box.id)
    assert first is not None
    first.env["A"] = "changed"
    first.backend_state.clear()
    first.status = "error"
    second = await rows.find(box.id)
    assert second is not None
    assert (second.env, second.backend_state, second.status) == ({"A": "1"}, {"c": "x"}, "running")


async def test_nothing_is_trusted_while_the_generation_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = await _sandbox()
    await rows.find(box.id)

    async def unknown(name: str) -> None:
        return None

    monkeypatch.setattr(coordinator(), "generation", unknown)
    async with Queries() as queries:
        await rows.find(box.id)
        await rows.find(box.id)
    assert len(queries) == 2


async def test_a_row_deleted_meanwhile_is_reported_missing_not_as_a_crash() -> None:
    box = await _sandbox()
    found = await rows.find(box.id)
    assert found is not None
    await Sandbox.objects.filter(pk=box.id).adelete()  # by another request or process
    with pytest.raises(NotFound):
        await lifecycle.sleep_sandbox(found, "pause")
