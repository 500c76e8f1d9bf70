"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.io.connect import KafkaAccess


def run_pulse(env: dict[str, str], *args: str, timeout: float = 900, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    """Run ``pulse ARGS`` as a user would (a new process with this environment); with ``check``,
    fail the test with its output unless it exits 0."""
    done = subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, f"pulse {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


async def _next_values(consumer: AIOKafkaConsumer) -> list[dict]:
    """The JSON values of the consumer's next fetch (waiting up to a second)."""
    batch = await consumer.getmany(timeout_ms=1000)
    return [json.loads(m.value) for messages in batch.values() for m in messages]


async def read_topic(kafka: KafkaAccess, topic: str, expected: int, timeout: float) -> list[dict]:
    """The JSON values of a topic from its start, until ``expected`` are read or ``timeout``."""
    consumer = AIOKafkaConsumer(topic, **kafka.options(), auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    records: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            records += await _next_values(consumer)
    finally:
        await consumer.stop()
    return records


async def read_whole_topic(kafka: KafkaAccess, topic: str, partitions: int = 1) -> list[dict]:
    """The JSON values of a topic's ``partitions``, from the start to the end offsets of now."""
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[dict] = []
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            records += await _next_values(consumer)
    finally:
        await consumer.stop()
    return records
