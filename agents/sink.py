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

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any

import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from agents.context import Pulse
from stream.core.erasure import Erasure
from stream.infra.metrics import WorkerMetrics
from stream.infra.topics import topic_configs
from stream.io.connect import KafkaAccess
from stream.sinks import RedisSink, write_with_retry
from stream.sinks.erasure import (
    RETAINED_TOPICS,
    erase_from_redis,
    receipt,
    receipt_key,
    retained,
    store_receipt,
    worker_stores,
)
from stream.sinks.outbox import OutboxError, RedisWrites
from stream.topology import changelog_topic, redis_sink_group

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


def erasure_runs(parts: list[RedisWrites]) -> list[list[RedisWrites]]:
    """The parts in runs, each ending at a part with erasures (or at the last part).

    >>> [len(run) for run in erasure_runs([RedisWrites(), RedisWrites(erasures=["e"]), RedisWrites()])]
    [2, 1]
    """
    runs: list[list[RedisWrites]] = [[]]
    for part in parts:
        runs[-1].append(part)
        if part.erasures:
            runs.append([])
    return [run for run in runs if run]


async def _no_erasure(erasure: Erasure) -> int:
    raise RuntimeError(f"erasure {erasure.request_id} reached a sink that cannot erase")


async def apply_outbox(kafka: KafkaAccess, topic: str, group: str, sink: RedisSink,
                       metrics: WorkerMetrics | None = None,
                       on_erasure: Callable[[Erasure], Awaitable[int]] = _no_erasure,
                       group_timing: dict[str, int] | None = None) -> None:
    """Apply the outbox topic to Redis for ever (until cancelled)."""
    consumer = AIOKafkaConsumer(topic, **kafka.options(), group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", **(group_timing or {}))
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if not batches:
                continue
            parts = decode_outbox(record for records in batches.values() for record in records)
            retry_counter = metrics.redis_retries.inc if metrics else None
            written = 0
            for run in erasure_runs(parts):
                # an erasure comes after every earlier write of its record's partition
                written += await write_with_retry(partial(sink.write, RedisWrites.merge(run)), retry_on=RETRYABLE,
                                                  on_retry=retry_counter)
                for text in run[-1].erasures:
                    written += await write_with_retry(partial(on_erasure, Erasure.from_json(text)),
                                                      retry_on=RETRYABLE, on_retry=retry_counter)
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
        await apply_outbox(settings.kafka, settings.topic("redis-outbox"),
                           redis_sink_group(settings.app_id), sink, pulse.metrics, partial(finish_erasure, pulse),
                           settings.group_timing)


async def finish_erasure(pulse: Pulse, erasure: Erasure) -> int:
    """Erase the customer from Redis, then store and publish the receipt (``privacy`` topic);
    the number of Redis entries removed."""
    settings = pulse.settings
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        redis_stores = await erase_from_redis(client, erasure.customer_id)
        if await client.exists(receipt_key(erasure.request_id)):
            return 0  # a redelivered erasure: its receipt (what the first pass removed) stands
        topics = [settings.topic(name) for name in RETAINED_TOPICS]
        try:
            configs = await topic_configs(settings.kafka, topics, ["retention.ms"])
        except Exception as exc:  # noqa: BLE001 - the receipt then says "unknown", the erasure stands
            log.warning("erasure %s: topic retention not read (%s)", erasure.request_id, exc)
            configs = {}
        retention = {t: int(v) if (v := configs.get(t, {}).get("retention.ms")) is not None else None for t in topics}
        document = receipt(erasure, worker_stores(erasure, changelog_topic(settings, "customer-state")), redis_stores,
                           retained(retention, datetime.fromisoformat(erasure.tables_cleared_at)))
        # published first: a crash in between publishes it again (same request id), never loses it
        await (await pulse.app.producer.send(settings.topic("privacy"), erasure.request_id.encode(),
                                             json.dumps(document).encode(), 0, None, None))
        await store_receipt(client, document)
    finally:
        await client.aclose()
    log.info("erasure %s: done, receipt stored and published", erasure.request_id)
    return sum(int(store.get("removed", 0)) for store in redis_stores)
