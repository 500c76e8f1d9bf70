"""Producing records to Kafka from the CLI and tests (aiokafka, acks=all)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]],
                  progress: Callable[[int], None] | None = None) -> int:
    """Send ``(key, value)`` records and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=16 * 1024 * 1024)
    await producer.start()
    sent = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if len(futures) >= 1000:
                for fut in futures:
                    await fut
                futures.clear()
                if progress:
                    progress(sent)
        for fut in futures:
            await fut
        if progress:
            progress(sent)
    finally:
        await producer.stop()
    return sent


def event_records(events: Iterable[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(str(e["customer_id"]).encode(), json.dumps(e).encode()) for e in events]
