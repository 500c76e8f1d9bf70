from __future__ import annotations

import pytest

from stream.sinks import MemorySink
from tests.sink_contract import SinkContract


class TestMemorySink(SinkContract):
    @pytest.fixture
    def sink(self) -> MemorySink:
        return MemorySink()
