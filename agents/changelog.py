"""The profile agent's tables, written in batches.

A Faust table write (``table[key] = value``) stores the value in the partition's RocksDB and
queues one changelog record in Faust's producer buffer, which sends them one at a time, each
with its future, its callbacks and, once acknowledged, a write of the table's persisted
offset to RocksDB. That path cost about a quarter of a worker's CPU under ``pulse bench``
(docs/performance.md, "Table writes"), for about two records per event.

:class:`BatchedTable` reads a table through its store (one RocksDB lookup, in the partition
the current event picks, as the table does) and writes the store the same way, but leaves the
changelog record to a :class:`ChangelogBatch`: :meth:`ChangelogBatch.flush` sends a batch's
records together, as one Kafka record batch per changelog partition, waits until the broker
has acknowledged them all, and then records each partition's persisted offset once, as
Faust's own acknowledgement callback would have.

The records are the ones Faust would have sent: the same topic and partition (the current
event's), the same key bytes (:data:`agents.table_keys.TABLE_KEYS`), the value, or a
tombstone for a delete. Recovery, standby replicas and a rebalance read them as before. Only
the profile agent writes these tables, one batch at a time, so a partition's records keep
their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from faust.streams import current_event
from faust.types import TP

from agents.batching import DURABLE_TIMEOUT_SECONDS, NotDurable
from agents.record_batches import record_batches
from agents.table_keys import TABLE_KEYS


@dataclass
class _Pending:
    table: Any
    records: list[tuple[bytes, bytes | None]] = field(default_factory=list)


class ChangelogBatch:
    """The changelog records of the table writes since the last :meth:`flush`, by changelog
    partition, in the order written. ``producer`` is an ``AIOKafkaProducer``."""

    def __init__(self, producer: Any, timeout: float = DURABLE_TIMEOUT_SECONDS) -> None:
        self.producer = producer
        self.timeout = timeout
        self.pending: dict[tuple[str, int], _Pending] = {}

    def add(self, table: Any, topic: str, key: str, value: bytes | None) -> None:
        """Queue the changelog record of a write (``None``: a delete) to ``topic`` (the table's
        changelog) at the current event's partition."""
        event = current_event()
        if event is None:
            raise RuntimeError(f"table {table.name}: written outside of a batch (no current event)")
        pending = self.pending.get((topic, event.message.partition))
        if pending is None:
            pending = self.pending[topic, event.message.partition] = _Pending(table)
        pending.records.append((TABLE_KEYS.dumps(key), value))

    def __len__(self) -> int:
        return sum(len(pending.records) for pending in self.pending.values())

    async def flush(self) -> None:
        """Send every queued record and wait for the broker's acknowledgements; then store each
        changelog partition's newest offset as the table's persisted offset. :class:`NotDurable`
        if a record was refused or not acknowledged within ``timeout`` seconds."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        sent: list[tuple[_Pending, str, int, int, asyncio.Future[Any]]] = []
        for (topic, partition), part in pending.items():
            for count, batch in record_batches(self.producer, part.records):
                sent.append((part, topic, partition, count,
                             await self.producer.send_batch(batch, topic, partition=partition)))
        done, not_done = await asyncio.wait([future for *_, future in sent], timeout=self.timeout)
        if not_done:
            raise NotDurable(f"{len(not_done)} table changelog batches not acknowledged in {self.timeout:.0f} s "
                             "(producer stopping or stalled)")
        newest: dict[tuple[str, int], tuple[Any, int]] = {}
        for part, topic, partition, count, future in sent:
            if future.cancelled():
                raise NotDurable(f"a changelog batch of {topic}[{partition}] was cancelled before it was sent")
            if future.exception() is not None:
                raise NotDurable(f"a changelog batch of {topic}[{partition}] was refused: {future.exception()!r}")
            metadata = future.result()
            if metadata is None:  # acks=0: no offsets (the worker's producer waits for all replicas)
                raise NotDurable(f"a changelog batch of {topic}[{partition}] was sent without acknowledgement")
            last = metadata.offset + count - 1  # the batch's base offset, then one per record
            if last > newest.get((topic, partition), (None, -1))[1]:
                newest[topic, partition] = (part.table, last)
        for (topic, partition), (table, offset) in newest.items():
            table.data.set_persisted_offset(TP(topic, partition), offset)


class BatchedTable(MutableMapping[str, bytes]):
    """A Faust table read and written through its store, its changelog records sent by ``changelog``."""

    def __init__(self, table: Any, changelog: ChangelogBatch) -> None:
        self.table = table
        self.changelog = changelog
        self.topic: str = table.changelog_topic.get_topic_name()

    def __getitem__(self, key: str) -> bytes:
        return self.table.data[key]  # type: ignore[no-any-return]  # the store: one lookup

    # The changelog record first, as a Faust table does: a write it refuses leaves the store as it was.
    def __setitem__(self, key: str, value: bytes) -> None:
        self.changelog.add(self.table, self.topic, key, value)
        self.table.data[key] = value

    def __delitem__(self, key: str) -> None:
        # as a Faust table does: a tombstone even for a key that is not there (``pop`` asks first)
        self.changelog.add(self.table, self.topic, key, None)
        del self.table.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
