"""The API's ASGI handler (sandboxes/api/asgi.py): a request that needs no database
never leaves the event loop, and one that used it still has its connections looked
after, on the thread that holds them."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.contrib.auth.models import User

from sandboxes.api import asgi
from sandboxes.api.asgi import ApiHandler
from sandboxes.models import ApiToken
from tests.fakes import LocalAgentBackend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def api(backend: LocalAgentBackend) -> AsyncIterator[httpx.AsyncClient]:
    user = await User.objects.acreate(username="hops")
    _, token = await sync_to_async(ApiToken.issue)(user)
    transport = httpx.ASGITransport(app=ApiHandler())
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", headers=headers
    ) as client:
        yield client


class Hops:
    """Calls into a worker thread (``sync_to_async``), and the threads hygiene ran on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.hygiene: list[int] = []
        original_call = SyncToAsync.__call__
        original_hygiene = asgi._database_hygiene

        async def call(this: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original_call(this, *args, **kwargs)

        def hygiene() -> None:
            self.hygiene.append(threading.get_ident())
            original_hygiene()

        monkeypatch.setattr(SyncToAsync, "__call__", call)
        monkeypatch.setattr(asgi, "_database_hygiene", hygiene)


async def _exec(api: httpx.AsyncClient, sandbox_id: str) -> None:
    response = await api.post(f"/api/v1/sandboxes/{sandbox_id}/exec", json={"command": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["exit_code"] == 0


async def test_an_exec_from_memory_stays_on_the_event_loop(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await api.post("/api/v1/sandboxes", json={"name": "hops"})
    assert created.status_code in (200, 201), created.text
    sandbox_id = created.json()["id"]
    await _exec(api, sandbox_id)  # the caller and the sandbox are in memory now

    hops = Hops(monkeypatch)
    await _exec(api, sandbox_id)
    assert hops.calls == 0 and hops.hygiene == []

    # A request that queries (the list is read from the database each time) has its
    # connections looked after, once, on the thread the queries ran on.
    listed = await api.get("/api/v1/sandboxes")
    assert listed.status_code == 200
    database_thread = await sync_to_async(threading.get_ident)()
    assert hops.hygiene == [database_thread]
