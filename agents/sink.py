"""The Redis sink: applies the Redis outbox (``stream/sinks/outbox.py``) to Redis — profile
hashes and segment sets, the capped tag stream, the alert stream and pub/sub channel — in
pipelined, idempotent rounds.

It is a plain consumer of a group of its own (``{app_id}-redis-sink``), not a Faust agent:
Faust feeds every agent of a worker from one fetch loop that waits while any agent's queue is
full, so during a backlog of events the sink got nothing until the events were done (Redis
was minutes behind), and a Redis outage stopped the event processing too. Its offsets are
committed only after Redis has the records' writes; anything not committed is applied again
after a restart or a rebalance, which the versioned, once-only writes make harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from functools import partial
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from agents.context import Pulse
from stream.infra.metrics import WorkerMetrics
from stream.sinks import RedisSink, write_with_retry
from stream.sinks.outbox import OutboxError, RedisWrites
from stream.topology import redis_sink_group

log = logging.getLogger(__name__)

MAX_RECORDS = 20  # outbox records per round, each up to a few hundred writes
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)
LOST_COMMIT = (CommitFailedError, IllegalStateError, RebalanceInProgressError)


def decode_outbox(records: Iterable[Any]) -> list[RedisWrites]:
    """The writes of outbox records; a record that is not one is logged and skipped (only the
    profile agent writes this internal topic)."""
    parts = []
    for record in records:
        try:
            parts.append(RedisWrites.from_record(record.value))
        except OutboxError as exc:
            log.error("redis sink: skipped %s[%s]@%s: %s", record.topic, record.partition, record.offset, exc)
    return parts


async def apply_outbox(bootstrap: str, topic: str, group: str, sink: RedisSink,
                       metrics: WorkerMetrics | None = None) -> None:
    """Apply the outbox topic to Redis for ever (until cancelled)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if not batches:
                continue
            parts = decode_outbox(record for records in batches.values() for record in records)
            writes = RedisWrites.merge(parts)
            written = await write_with_retry(partial(sink.write, writes), retry_on=RETRYABLE,
                                             on_retry=metrics.redis_retries.inc if metrics else None)
            if metrics is not None:
                metrics.redis_writes.inc(written)
                now_ms = time.time() * 1000
                for part in parts:
                    if part.input_ms is not None:
                        metrics.event_to_redis.observe(max(0.0, now_ms - part.input_ms) / 1000)
            try:
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
            except LOST_COMMIT as exc:  # rebalanced meanwhile: the new owner applies them again
                log.warning("redis sink: offsets not committed (%s); those records are applied again", exc)
    finally:
        await consumer.stop()


def register(pulse: Pulse) -> None:
    settings = pulse.settings
    sink = RedisSink.from_url(settings.redis_url)

    @pulse.app.task
    async def redis_sink() -> None:
        await apply_outbox(settings.kafka_bootstrap, settings.topic("redis-outbox"),
                           redis_sink_group(settings.app_id), sink, pulse.metrics)
