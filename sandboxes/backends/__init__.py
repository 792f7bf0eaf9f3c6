"""Container backends behind one interface; the active one is chosen by dotted path
in ``settings.SANDBOX_BACKEND`` and built once per process."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .base import AgentAddress, Backend, BackendState, SandboxSpec

__all__ = ["AgentAddress", "Backend", "BackendState", "SandboxSpec", "get_backend"]


@cache
def get_backend() -> Backend:
    path = settings.SANDBOX_BACKEND
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Setting SANDBOX_BACKEND={path!r} cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ImproperlyConfigured(f"Setting SANDBOX_BACKEND={path!r} is not a Backend subclass.")
    return cls()
