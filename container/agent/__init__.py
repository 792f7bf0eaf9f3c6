"""The agent that runs inside every sandbox and does all work there.

Installed in the image as the package ``sandbox_agent``; on the host the same files
are importable as ``container.agent`` (the server uses only ``protocol``).
"""
