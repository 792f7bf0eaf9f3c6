"""API v1: processes."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["processes"])
