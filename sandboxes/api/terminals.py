"""API v1: terminals."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["terminals"])
