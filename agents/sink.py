"""The Redis sink agents: mirror ``profiles`` (hashes and segment sets), ``tag-changes`` (the
capped tag stream) and ``alerts`` (the alert stream and pub/sub channel) into Redis in
pipelined, idempotent batches."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import redis

from agents.batching import held
from schemas import Alert, Profile, TagChange
from stream.sinks import RedisSink, write_with_retry

if TYPE_CHECKING:
    from agents.app import Pulse

BATCH_SIZE = 500
BATCH_WITHIN_SECONDS = 0.05
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)


def register(pulse: Pulse) -> None:
    sink = RedisSink.from_url(pulse.settings.redis_url)

    # A batch is acknowledged only after the loop body has written it; a failure or a stop
    # in the middle (a Redis outage at shutdown) leaves it unacknowledged (agents/batching.py).
    def newest_profiles(batch: list[bytes]) -> list[Profile]:
        latest: dict[str, Profile] = {}
        for raw in batch:
            profile = Profile.model_validate_json(raw)
            seen = latest.get(profile.customer_id)
            if seen is None or profile.version > seen.version:
                latest[profile.customer_id] = profile
        return list(latest.values())

    @pulse.app.agent(pulse.profiles, name="redis-sink", concurrency=1)
    async def redis_sink(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            with held(events):
                profiles = newest_profiles([event.value for event in events])
                await write_with_retry(partial(sink.write_profiles, profiles), retry_on=RETRYABLE)

    @pulse.app.agent(pulse.tag_changes, name="redis-tag-sink", concurrency=1)
    async def redis_tag_sink(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            with held(events):
                changes = [TagChange.model_validate_json(event.value) for event in events]
                await write_with_retry(partial(sink.write_tag_changes, changes), retry_on=RETRYABLE)

    @pulse.app.agent(pulse.alerts, name="redis-alert-sink", concurrency=1)
    async def redis_alert_sink(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            with held(events):
                alerts = [Alert.model_validate_json(event.value) for event in events]
                await write_with_retry(partial(sink.write_alerts, alerts), retry_on=RETRYABLE)
