"""The admin site for staff: sandboxes and API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from .models import ApiToken, Sandbox

if TYPE_CHECKING:  # django's ModelAdmin is generic for type checkers only
    SandboxModelAdmin = admin.ModelAdmin[Sandbox]
    ApiTokenModelAdmin = admin.ModelAdmin[ApiToken]
else:
    SandboxModelAdmin = ApiTokenModelAdmin = admin.ModelAdmin


@admin.register(Sandbox)
class SandboxAdmin(SandboxModelAdmin):
    list_display = ("id", "name", "owner", "status", "keep_alive", "created_at", "last_active_at")
    list_filter = ("status", "keep_alive")
    search_fields = ("id", "name", "owner__username")
    readonly_fields = ("id", "created_at", "last_active_at", "backend_state", "image")


@admin.register(ApiToken)
class ApiTokenAdmin(ApiTokenModelAdmin):
    list_display = ("hint", "name", "user", "created_at", "last_used_at")
    search_fields = ("name", "hint", "user__username")
    readonly_fields = ("key_hash", "hint", "created_at", "last_used_at")
