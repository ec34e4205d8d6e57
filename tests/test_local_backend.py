"""The local backend: the conformance suite, plus what only a local process shows."""

from __future__ import annotations

from typing import Any

import pytest

from .backend_contract import BackendContract


class TestLocalContract(BackendContract):
    @pytest.fixture
    def target_config(self) -> dict[str, Any]:
        return {"type": "local"}
