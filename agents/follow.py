"""Following a one-partition compacted topic from its start or its last record: how every
worker reads the population shares (agents/population_sync.py) and the model snapshots
(agents/trainer.py). A plain consumer with no group: each worker reads everything."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.io.connect import KafkaAccess

log = logging.getLogger(__name__)


async def follow(kafka: KafkaAccess, topic: str, on_record: Callable[[Any], None], *,
                 start: Literal["beginning", "last"], what: str) -> None:
    """Call ``on_record`` with each record of partition 0, for ever. A record it cannot
    read (``ValueError``, ``KeyError``, ``TypeError``) is logged with its offset and skipped."""
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        # explicit offsets: seek_to_beginning right after assign() left the position at the end
        if start == "beginning":
            consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        else:
            consumer.seek(tp, max(0, (await consumer.end_offsets([tp]))[tp] - 1))
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        on_record(record)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("%s: unreadable record at offset %s: %s", what, record.offset, exc)
    finally:
        await consumer.stop()
