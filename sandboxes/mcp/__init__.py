"""Sandboxes as a Model Context Protocol server at /mcp (docs/mcp.md)."""
