"""Share levels of an exposed port (sandboxes/ports.py, sandboxes/preview/private.py):
how a level, an expiry and a revoke combine, and whom each level admits through the
policy seams, on the database without a container."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from sandboxes import policy, ports
from sandboxes.errors import BadRequest, NotFound
from sandboxes.models import ExposedPort, Sandbox
from sandboxes.preview import private

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def sandbox() -> Sandbox:
    owner = await User.objects.acreate(username="owner")
    return await Sandbox.objects.acreate(owner=owner, name="box")


@pytest.fixture
def classmates() -> Iterator[set[int]]:
    """A membership rule (as the classroom registers one) naming these user ids."""
    members: set[int] = set()

    async def rule(user: User, sandbox: Sandbox) -> bool:
        return user.pk in members

    policy.register_membership(rule)
    yield members
    policy._memberships.remove(rule)


async def test_levels_expiry_and_revoke(sandbox: Sandbox) -> None:
    row, created = await ports.expose(sandbox, 8000, level="private")
    assert created and row.visibility == "private" and ports.ended(row) is None
    out = ports.port_out(row, ports.Origin("http", 8000))
    assert out["share_url"].startswith("http://localhost:8000/p/") and out["private"] is True
    assert out["audience"] == ports.AUDIENCE[ports.Visibility.PRIVATE]

    shared = await ports.share(sandbox, 8000, "public", expires_in=60)
    assert shared.expires_at is not None and ports.visibility(shared) == "public"
    kept = await ports.share(sandbox, 8000, None, keep_expiry=True)
    assert kept.expires_at == shared.expires_at  # the end stays while the level does
    wider = await ports.share(sandbox, 8000, "authenticated", keep_expiry=True)
    assert wider.expires_at is None  # a new level starts without an end
    later = timezone.now() + datetime.timedelta(seconds=61)
    timed = await ports.share(sandbox, 8000, "course", expires_in=60)
    assert ports.visibility(timed, later) == "private" and ports.ended(timed, later) == "expired"

    revoked = await ports.share(sandbox, 8000, "private")
    assert revoked.revoked_at is not None and ports.ended(revoked) == "revoked"
    again = await ports.share(sandbox, 8000, "course")
    assert again.revoked_at is None and ports.ended(again) is None
    # Exposing again is a new link: new token and code, level as asked.
    fresh, created = await ports.expose(sandbox, 8000, level="public")
    assert not created and fresh.token != row.token and fresh.share_code != row.share_code


async def test_bad_shares_are_refused(sandbox: Sandbox) -> None:
    await ports.expose(sandbox, 8000, level="private")
    with pytest.raises(BadRequest) as bad:
        await ports.share(sandbox, 8000, "private", expires_in=60)
    assert bad.value.code == "invalid_expiry"
    with pytest.raises(BadRequest) as bad:
        await ports.share(sandbox, 8000, "friends")
    assert bad.value.code == "invalid_visibility"
    with pytest.raises(BadRequest) as bad:
        await ports.share(sandbox, 8000, "public", expires_in=0)
    assert bad.value.code == "invalid_expiry"
    with pytest.raises(BadRequest):
        await ports.share(sandbox, 2**70, "public")
    with pytest.raises(NotFound):
        await ports.share(sandbox, 9000, "public")
    assert await ExposedPort.objects.filter(visibility="private").acount() == 1


async def test_each_level_admits_its_audience(sandbox: Sandbox, classmates: set[int]) -> None:
    row, _ = await ports.expose(sandbox, 8000, level="private")
    row = await ExposedPort.objects.select_related("sandbox").aget(pk=row.pk)
    mate = await User.objects.acreate(username="mate")
    other = await User.objects.acreate(username="other")
    gone = await User.objects.acreate(username="gone", is_active=False)
    classmates.update({mate.pk, gone.pk})
    expected = {
        "private": {sandbox.owner_id},
        "course": {sandbox.owner_id, mate.pk},
        "authenticated": {sandbox.owner_id, mate.pk, other.pk},
    }
    for level, admitted in expected.items():
        for user_id in (sandbox.owner_id, mate.pk, other.pk, gone.pk):
            assert await private.may_open(user_id, row, level) is (user_id in admitted), (
                level,
                user_id,
            )
    # The reused "yes" is per level: one at "course" opens nothing at "private".
    assert await private._may_open_cached(mate.pk, row, "course")
    assert not await private._may_open_cached(mate.pk, row, "private")
