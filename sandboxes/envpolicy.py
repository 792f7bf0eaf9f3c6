"""Which environment variables a tenant may give a sandbox.

The agent inside each container is configured by the server alone, through
``SANDBOX_AGENT_*`` variables (its key, its disk quota). A tenant who could set one
on create, PATCH, a template or an exec could switch off the quota or confuse the
agent, so every way in refuses them with one error.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandboxes.errors import BadRequest

RESERVED_PREFIXES = ("SANDBOX_AGENT_",)


def refuse_reserved(names: Iterable[str]) -> None:
    """Raise 400 ``reserved_env`` if any name is the agent's own."""
    reserved = sorted(n for n in names if n.upper().startswith(RESERVED_PREFIXES))
    if reserved:
        raise BadRequest(
            f"{', '.join(reserved)}: variables starting with SANDBOX_AGENT_ configure the "
            "sandbox's agent and only the server may set them; use another name.",
            code="reserved_env",
        )
