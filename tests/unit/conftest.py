"""Unit tests talk to in-process agents holding the unit-test key."""

from __future__ import annotations

import pytest

from tests.agentkit import use_unit_key


@pytest.fixture(autouse=True)
def _agent_key() -> None:
    use_unit_key()
