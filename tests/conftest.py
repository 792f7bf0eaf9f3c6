"""Shared fixtures: a live server on real Docker (integration and e2e tiers)."""

from __future__ import annotations

pytest_plugins = ["tests.server"]


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    """Mark each test with its tier, from the folder it lives in."""
    import pytest

    for item in items:
        for tier in ("integration", "scale", "e2e"):
            if f"/tests/{tier}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))
