"""Unit tests talk to in-process agents holding the unit-test key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandboxes import rows
from sandboxes.backends import get_backend
from sandboxes.images import image_tag
from tests.agentkit import use_unit_key
from tests.fakes import LocalAgentBackend


@pytest.fixture(autouse=True)
def _agent_key() -> None:
    use_unit_key()


@pytest.fixture
async def backend(settings: Any) -> AsyncIterator[LocalAgentBackend]:
    """The fake backend: each sandbox is the real agent as a local process."""
    settings.SANDBOX_BACKEND = "tests.fakes.LocalAgentBackend"
    settings.SANDBOX_START_TIMEOUT = 2.0
    settings.SANDBOX_IMAGE = "fake-image"
    get_backend.cache_clear()
    image_tag.cache_clear()
    backend = get_backend()
    assert isinstance(backend, LocalAgentBackend)
    yield backend
    for process in list(backend.processes.values()):
        process.kill()
    get_backend.cache_clear()
    image_tag.cache_clear()  # the real tag again for whoever asks next
    rows._rows.clear()  # rows read during the test name sandboxes of this backend
