"""Shared fixtures: a live server on real Docker (integration and e2e tiers)."""

from __future__ import annotations

pytest_plugins = ["tests.server"]
