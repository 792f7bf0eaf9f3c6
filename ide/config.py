"""Settings from environment variables, each with a safe default and an exact error.

Every setting the project reads from the environment goes through these helpers,
so a bad value fails at start-up with a sentence that names the variable.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"Setting {name}={raw!r} is not a boolean; use 1/0 or true/false.")


def env_int(name: str, default: int, *, minimum: int | None = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"Setting {name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"Setting {name}={value} must be at least {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"Setting {name}={raw!r} is not a number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"Setting {name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_bytes(name: str, default: str) -> int:
    """A size such as ``512m`` or ``1g`` (binary units) as a number of bytes."""
    raw = os.environ.get(name, default).strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    try:
        if raw and raw[-1] in units:
            return int(float(raw[:-1]) * units[raw[-1]])
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"Setting {name}={raw!r} is not a size; write it like 512m or 2g."
        ) from None
