"""Records sent as Kafka record batches: one ``send_batch`` per topic partition (or as many as
the producer's batch size needs) instead of one ``send`` per record. A send costs a future, a
lookup of the partition and a place in the producer's accumulator per record; a record batch
costs one of each per batch. The profile agent sends a batch's outputs and its tables'
changelog records so (docs/performance.md, "Table writes" and "Output records")."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

Item = tuple[bytes | None, bytes | None]  # key, value (None: a tombstone)

_PARTITIONER = DefaultPartitioner()  # what the worker's producer uses (Faust's default)


class RecordTooLarge(ValueError):
    """A record that does not fit a record batch of the producer's batch size on its own."""


def record_batches(producer: Any, items: Iterable[Item]) -> Iterator[tuple[int, Any]]:
    """The items in order as filled ``BatchBuilder``s of ``producer`` (an ``AIOKafkaProducer``),
    each with its record count."""
    batch, count = producer.create_batch(), 0
    for key, value in items:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            yield count, batch
            batch, count = producer.create_batch(), 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise RecordTooLarge(f"a record of {len(value or b'')} bytes does not fit a producer batch")
        count += 1
    if count:
        yield count, batch


def kafka_producer(app: Any) -> Any:
    """The started ``AIOKafkaProducer`` behind a Faust app's producer."""
    return app.producer._ensure_producer()


async def send_batched(producer: Any, records: Iterable[tuple[str, int | None, bytes | None, bytes | None]]
                       ) -> list[Awaitable[Any]]:
    """Send ``(topic, partition, key, value)`` records (value None: a tombstone) in order within each topic partition; a
    record without a partition goes where the producer's partitioner would send it (by key).
    The futures resolve when the broker has acknowledged each record batch."""
    by_partition: dict[tuple[str, int], list[Item]] = {}
    partitions: dict[str, list[int]] = {}
    for topic, partition, key, value in records:
        if partition is None:
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = _PARTITIONER(key, partitions[topic], partitions[topic])
        by_partition.setdefault((topic, partition), []).append((key, value))
    return [await producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), items in by_partition.items()
            for _, batch in record_batches(producer, items)]
