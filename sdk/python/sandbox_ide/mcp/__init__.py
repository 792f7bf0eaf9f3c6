"""Sandboxes as a Model Context Protocol server (needs the ``mcp`` extra).

``layer`` is shared with the server's ``/mcp``; ``stdio`` is ``sandbox-ide mcp``.
"""
