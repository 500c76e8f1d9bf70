"""agents/record_batches.send_batched against real Kafka: records without a partition land
where the producer's own ``send`` puts the same key, and each partition keeps their order."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.record_batches import send_batched
from stream.io.connect import KafkaAccess
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration

PARTITIONS = 5


async def _read(kafka: KafkaAccess, topic: str) -> dict[int, list[tuple[bytes | None, bytes | None]]]:
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in range(PARTITIONS)}
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                found[tp.partition] += [(m.key, m.value) for m in messages]
        return found
    finally:
        await consumer.stop()


async def _run(kafka: KafkaAccess, batched: str, sent: str) -> None:
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    producer = AIOKafkaProducer(**kafka.options(), acks="all")
    await producer.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in (batched, sent)])
        keys = [f"c{i % 37}".encode() for i in range(600)]
        records = [(batched, None, key, f"{i}".encode() * 40) for i, key in enumerate(keys)]
        records += [(batched, 3, b"pinned", b"x"), (batched, 3, None, b"y")]
        await asyncio.gather(*await send_batched(producer, records))
        await asyncio.gather(*[await producer.send(sent, value, key=key) for _, _, key, value in records[:600]])
        got, want = await _read(kafka, batched), await _read(kafka, sent)
        assert {p: rows for p, rows in got.items() if p != 3} == {p: rows for p, rows in want.items() if p != 3}
        assert got[3] == [*want[3], (b"pinned", b"x"), (None, b"y")]
        assert sum(map(len, got.values())) == 602 and sum(1 for rows in got.values() if rows) > 1
    finally:
        await producer.stop()
        await admin.delete_topics([batched, sent])
        await admin.close()


def test_batched_records_land_where_send_puts_them_in_order(isolated: Isolated) -> None:
    prefix = isolated.settings.topic_prefix
    asyncio.run(_run(isolated.settings.kafka, f"{prefix}batched", f"{prefix}sent"))
