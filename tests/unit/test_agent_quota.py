"""The agent's disk accounting (container/agent/quota.py) and its argument parsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from container.agent import quota
from container.agent.__main__ import parse


def test_walk_counts_allocated_blocks_once_per_inode(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "a", tmp_path / "hard-link")
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1024**3)  # 1 GiB apparent, nothing allocated
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "b").write_bytes(b"y" * 50_000)
    used = quota.walk((str(tmp_path),))[str(tmp_path)]
    assert 150_000 <= used < 400_000


async def test_refusal_reports_usage_against_the_quota(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(quota, "ROOTS", (str(tmp_path),))
    monkeypatch.setattr(quota, "walk", lambda roots=(str(tmp_path),): {str(tmp_path): 3 * 2**20})
    watcher = quota.DiskWatcher(quota=4 * 2**20)
    assert await watcher.refusal() is None
    assert "would pass" in (await watcher.refusal(2 * 2**20) or "")
    watcher.quota = 2 * 2**20
    watcher.changed()
    message = await watcher.refusal()
    assert message and "3.0 MiB of 2.0 MiB" in message and watcher.exceeded


def test_agent_arguments() -> None:
    assert parse(["--socket", "/s"]) == {"socket": "/s", "tcp": "", "user": ""}
    assert parse(["--user", "sandbox"])["user"] == "sandbox"
    assert parse(["--tcp=0.0.0.0:9"])["tcp"] == "0.0.0.0:9"
    with pytest.raises(SystemExit):
        parse(["--nope", "x"])
    with pytest.raises(SystemExit):
        parse(["--socket"])


def test_a_template_may_lower_the_disk_quota_never_raise_it(settings) -> None:  # type: ignore[no-untyped-def]
    from sandboxes.backends.base import SandboxSpec
    from sandboxes.backends.docker import disk_quota

    def spec(**limits: float) -> SandboxSpec:
        return SandboxSpec(sandbox_id="x", owner_id=1, image="i", limits=limits)

    settings.SANDBOX_DISK_QUOTA = 5 * 1024**3
    assert disk_quota(spec()) == 5 * 1024**3
    assert disk_quota(spec(disk_mb=100)) == 100 * 1024**2
    assert disk_quota(spec(disk_mb=10**6)) == 5 * 1024**3
    settings.SANDBOX_DISK_QUOTA = 0  # none on the server: a template's own still holds
    assert disk_quota(spec()) == 0
    assert disk_quota(spec(disk_mb=100)) == 100 * 1024**2
