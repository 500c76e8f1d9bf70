from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stream.settings import Settings
from stream.sinks import RedisSink
from tests.sink_contract import SinkContract

pytestmark = pytest.mark.integration


class TestRedisSink(SinkContract):
    @pytest.fixture
    async def sink(self, infra: Settings) -> AsyncIterator[RedisSink]:
        sink = RedisSink.from_url(infra.redis_url)
        yield sink
        await sink.close()
