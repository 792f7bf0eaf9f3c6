"""The server's client of the agent inside each sandbox."""

from .client import AgentClient, ExecEvent

__all__ = ["AgentClient", "ExecEvent"]
