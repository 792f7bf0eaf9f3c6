"""API v1: git."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["git"])
