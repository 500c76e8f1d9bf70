"""Producing records to Kafka from the CLI and tests (aiokafka, acks=all)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from stream.core.erasure import ERASE_KEY, ErasureRequest
from stream.core.owner import owner_partition
from stream.io.connect import KafkaAccess
from stream.settings import Settings


async def produce(kafka: KafkaAccess, topic: str, records: Iterable[tuple[bytes | None, bytes]],
                  progress: Callable[[int], None] | None = None) -> int:
    """Send ``(key, value)`` records and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all", linger_ms=5,
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


def event_key(event: dict[str, Any]) -> bytes:
    """The record key that puts an event in the partition of the worker that owns it: the anonymous
    id before login and for identify events, else the customer id.

    >>> event_key({"type": "identify", "customer_id": "c1", "anonymous_id": "d1"}), event_key({"customer_id": "c1"})
    (b'd1', b'c1')
    """
    anonymous = event.get("anonymous_id")
    if anonymous and (event.get("type") == "identify" or not event.get("customer_id")):
        return str(anonymous).encode()
    return str(event.get("customer_id", "")).encode()


def event_records(events: Iterable[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(event_key(e), json.dumps(e).encode()) for e in events]


async def request_resync(kafka: KafkaAccess, topic: str, key: bytes) -> int:
    """Ask every partition's owner to re-publish its profiles: one ``key`` record to each
    partition of ``topic`` (the workers' control topic). Returns the number of partitions."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        payload = json.dumps({"requested_at": datetime.now(UTC).isoformat()}).encode()
        for partition in partitions:
            await producer.send_and_wait(topic, payload, key=key, partition=partition)
        return len(partitions)
    finally:
        await producer.stop()


async def send_control(kafka: KafkaAccess, topic: str, key: bytes, owner_id: str, payload: bytes) -> int:
    """Send a control record (an erasure or unlink request) to the partition of ``topic`` (the
    workers' control topic) that owns the id, as the producers' default partitioner places its
    events; returns the partition."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all")
    await producer.start()
    try:
        owner = owner_partition(owner_id, len(await producer.partitions_for(topic)))
        await producer.send_and_wait(topic, payload, key=key, partition=owner)
        return owner
    finally:
        await producer.stop()


async def submit_erasure(settings: Settings, customer_id: str) -> ErasureRequest:
    """A new erasure request for ``customer_id``, sent to the workers (``pulse forget`` and the
    API's ``DELETE``); raises ``ErasureRequestError`` for an id it cannot be."""
    request = ErasureRequest.new(settings.stored_id(customer_id), datetime.now(UTC))
    await send_control(settings.kafka, settings.topic("customer-events"), ERASE_KEY, request.customer_id,
                          request.to_bytes())
    return request
