"""The Redis sink agent: mirrors ``profiles`` into Redis in pipelined, versioned batches."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import redis

from schemas import Profile
from stream.sinks import RedisSink, write_with_retry

if TYPE_CHECKING:
    from agents.app import Pulse

BATCH_SIZE = 500
BATCH_WITHIN_SECONDS = 0.2
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)


def register(pulse: Pulse) -> None:
    sink = RedisSink.from_url(pulse.settings.redis_url)

    @pulse.app.agent(pulse.profiles, name="redis-sink", concurrency=1)
    async def redis_sink(stream):  # type: ignore[no-untyped-def]
        # take() acknowledges a batch only after this loop body has finished with it,
        # so a Redis outage holds the offsets back instead of losing writes.
        async for batch in stream.take(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            latest: dict[str, Profile] = {}
            for raw in batch:
                profile = Profile.model_validate_json(raw)
                seen = latest.get(profile.customer_id)
                if seen is None or profile.version > seen.version:
                    latest[profile.customer_id] = profile
            await write_with_retry(partial(sink.write_profiles, list(latest.values())),
                                   retry_on=RETRYABLE)

