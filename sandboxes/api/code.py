"""API v1: code."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["code"])
