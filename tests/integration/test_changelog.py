"""The tables' changelogs, written in batches (agents/changelog.py): after a worker has
processed a stream and stopped, each table partition's changelog (real Kafka) holds exactly
what its RocksDB holds, key for key, and the persisted offset RocksDB keeps is the changelog's
last offset, so a restart neither replays what it has nor skips what it lacks."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Rdict

from stream.infra.worker import WorkerProcess, worker_env
from stream.io.connect import KafkaAccess
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.topology import changelog_topic
from tests.integration.conftest import Isolated, caught_up

pytestmark = pytest.mark.integration

OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's persisted offset
TABLES = ("customer-state", "sweep-index", "profile-counters", "event-time-maxima")


async def _changelog(kafka: KafkaAccess, topic: str, partition: int) -> tuple[dict[bytes, bytes], int]:
    """The newest value of each key (tombstones remove it) and the partition's last offset (-1: empty)."""
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: dict[bytes, bytes] = {}
        while await consumer.position(tp) < end:
            for message in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if message.value is None:
                    values.pop(message.key, None)
                else:
                    values[message.key] = message.value
        return values, end - 1
    finally:
        await consumer.stop()


def _rocksdb(path: Path) -> tuple[dict[bytes, bytes], int | None]:
    db = Rdict(str(path), access_type=AccessType.read_only())
    try:
        items = dict(db.items())
    finally:
        db.close()
    persisted = items.pop(OFFSET_KEY, None)
    return items, int(persisted) if persisted is not None else None


def test_each_table_partition_and_its_changelog_agree(isolated: Isolated) -> None:
    settings = isolated.settings
    events = sample_events(200, 3000, seed=5, prefix=f"c{isolated.tag}")
    log = isolated.data_dir / "worker.log"
    worker = WorkerProcess(worker_env(isolated.env), log, settings.web_port).start()
    try:
        asyncio.run(produce(settings.kafka, settings.topic("events"), event_records(events)))
        caught_up(settings)
    finally:
        assert worker.stop(signal.SIGTERM) == 0, "worker did not exit cleanly on SIGTERM"

    tables = isolated.data_dir / f"worker-{settings.web_port}" / "v1" / "tables"
    compared = 0
    for table in TABLES:
        for partition in range(settings.partitions):
            stored, persisted = _rocksdb(tables / f"{table}-{partition}.db")
            logged, last_offset = asyncio.run(_changelog(settings.kafka, changelog_topic(settings, table), partition))
            assert stored == logged, f"{table}[{partition}]: RocksDB and the changelog differ"
            assert persisted == (last_offset if last_offset >= 0 else None), f"{table}[{partition}]"
            compared += len(stored)
    assert compared > 200  # every customer's state at least, and their sweep entries
