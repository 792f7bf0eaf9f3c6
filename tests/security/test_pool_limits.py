"""The warm pool is not a way round limits.

Pooled sandboxes are built and kept running by the server for a template's owner.
Before the fix any teacher could ask for ``warm_pool: 50`` on every template of
theirs, and the server built all of it. Now pooled sandboxes count against the
template's owner (``WARM_POOL_MAX_PER_USER``) and the server
(``WARM_POOL_MAX_TOTAL``): asking for more answers 429 with a sentence, and the
filler never builds beyond either cap, however the sizes were set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.test_classroom import make_template
from tests.server import LiveServer, running_server

PER_USER, TOTAL = 2, 3


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {
        "WARM_POOL_MAX_PER_USER": str(PER_USER),
        "WARM_POOL_MAX_TOTAL": str(TOTAL),
        "CLASSROOM_WARM_POOL": "1",
        "SANDBOX_REAP_INTERVAL": "1",
    }
    with running_server("sbxpool", settings) as server:
        yield server


def refused(response: httpx.Response, setting: str, most: int) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "limit_reached"
    assert setting in error["message"] and f"at most {most}" in error["message"]


def pooled(server: LiveServer, owner: str | None = None) -> int:
    """Sandboxes the warm pools hold (of one template owner's templates, or all)."""
    where = f"template__owner__username={owner!r}" if owner else ""
    code = (
        "from sandboxes.models import PoolEntry\n"
        f"print(PoolEntry.objects.filter({where}).count())\n"
    )
    return int(server.manage("shell", "-c", code).strip().splitlines()[-1])


def open_course(api: httpx.Client, template_id: str) -> None:
    """A course with a usable invite link: the template's pool is filled."""
    course = api.post("/courses", json={"name": f"c-{template_id}", "template": template_id})
    assert course.status_code == 201, course.text
    invite = api.post(f"/courses/{course.json()['id']}/invites", json={})
    assert invite.status_code == 201, invite.text


def watch_pool(server: LiveServer, owner: str, until: int, passes: int = 4) -> int:
    """The most the pool held while it filled to ``until`` for ``owner`` and for a few
    more samples after (the reaper tops pools up every second)."""
    most, seen_full, deadline = 0, 0, time.monotonic() + 180
    while seen_full < passes:
        assert time.monotonic() < deadline, f"{owner}'s pool never reached {until}"
        mine, everyone = pooled(server, owner), pooled(server)
        assert everyone <= TOTAL, f"the server pooled {everyone} > WARM_POOL_MAX_TOTAL"
        most = max(most, mine)
        seen_full += mine >= until
    return most


def test_asking_for_more_than_the_owner_may_pool_is_429(school: LiveServer) -> None:
    api = school.client("pool-greedy")
    refused(
        api.post("/templates", json={"name": "huge", "warm_pool": 50}),
        "WARM_POOL_MAX_PER_USER",
        PER_USER,
    )
    assert api.get("/templates").json()["templates"] == []  # nothing was made
    first = api.post("/templates", json={"name": "first", "warm_pool": PER_USER})
    assert first.status_code == 201, first.text
    # The owner's other templates count: the second may have nothing left.
    refused(api.post("/templates", json={"name": "second", "warm_pool": 1}), "WARM_POOL", 0)
    # Without a size the default (CLASSROOM_WARM_POOL=1) is lowered to what fits.
    second = api.post("/templates", json={"name": "second"})
    assert second.status_code == 201 and second.json()["warm_pool"] == 0, second.text
    sid = second.json()["id"]
    refused(api.patch(f"/templates/{sid}", json={"warm_pool": 1}), "WARM_POOL_MAX_PER_USER", 0)
    assert api.get(f"/templates/{sid}").json()["warm_pool"] == 0
    # Giving some back makes room.
    fid = first.json()["id"]
    assert api.patch(f"/templates/{fid}", json={"warm_pool": 1}).status_code == 200
    assert api.patch(f"/templates/{sid}", json={"warm_pool": 1}).status_code == 200
    refused(api.patch(f"/templates/{fid}", json={"warm_pool": 2}), "WARM_POOL_MAX_PER_USER", 1)
    # Not valid at all stays a 400, as before.
    bad = api.patch(f"/templates/{fid}", json={"warm_pool": -1})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_warm_pool"


def test_the_filler_never_pools_more_than_the_caps(school: LiveServer) -> None:
    api = school.client("pool-racer")
    ids = [make_template(api, f"race-{i}", warm_pool=0)["id"] for i in range(3)]
    for template_id in ids:
        open_course(api, template_id)
    # Each request alone fits the cap: sent together, the check on the sizes may let
    # more than one through. The filler must hold the cap on what it builds anyway.
    with ThreadPoolExecutor(len(ids)) as pool:
        answers = list(
            pool.map(lambda tid: api.patch(f"/templates/{tid}", json={"warm_pool": PER_USER}), ids)
        )
    assert {a.status_code for a in answers} <= {200, 429}
    assert any(a.status_code == 200 for a in answers)
    # However the race went, the sizes the server now has may ask for more than the
    # cap (as after an operator lowers WARM_POOL_MAX_PER_USER): force that.
    school.manage(
        "shell",
        "-c",
        "from sandboxes.models import Template\n"
        f"Template.objects.filter(pk__in={ids!r}).update(warm_pool={PER_USER})\n",
    )
    assert watch_pool(school, "pool-racer", until=PER_USER) == PER_USER

    # Another teacher: the server-wide cap leaves room for one more only.
    other = school.client("pool-other")
    template = make_template(other, "late", warm_pool=0)
    open_course(other, template["id"])
    refused(
        other.patch(f"/templates/{template['id']}", json={"warm_pool": 2}),
        "WARM_POOL_MAX_TOTAL",
        TOTAL - PER_USER,
    )
    assert other.patch(f"/templates/{template['id']}", json={"warm_pool": 1}).status_code == 200
    assert watch_pool(school, "pool-other", until=1) == 1
    assert pooled(school) == TOTAL
