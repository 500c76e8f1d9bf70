from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stream.sinks import RedisSink
from tests.sink_contract import SinkContract

pytestmark = pytest.mark.integration


class TestRedisSink(SinkContract):
    @pytest.fixture
    async def sink(self, test_redis: str) -> AsyncIterator[RedisSink]:
        sink = RedisSink.from_url(test_redis)
        yield sink
        await sink.close()
