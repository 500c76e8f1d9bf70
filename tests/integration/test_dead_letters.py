"""Bad records go to the DLQ with the reason; valid ones around them are all processed."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import redis
from aiokafka import AIOKafkaConsumer

from stream.infra.worker import WorkerProcess, worker_env
from stream.produce import event_records, produce
from stream.sample import sample_events
from stream.sinks.redis import customer_key
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration

BAD = [
    (b'{"type": "purchase", "event_id": ', "not_json"),
    (b"\xff\xfe\xfa", "not_utf8"),
    (b'{"type": "teleport", "event_id": "x", "customer_id": "c", '
     b'"event_time": "2024-01-01T00:00:00Z"}', "unknown_type"),
    (b'{"type": "purchase", "event_id": "x", "event_time": "2024-01-01T00:00:00Z", '
     b'"order_id": "o", "total": 1}', "missing_field"),
    (b'{"type": "purchase", "event_id": "x", "customer_id": "c", '
     b'"event_time": "2024-01-01T00:00:00Z", "order_id": "o", "total": -5}', "invalid_field"),
]


async def _read_dlq(bootstrap: str, topic: str, expected: int, timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                records += [json.loads(m.value) for m in messages]
    finally:
        await consumer.stop()
    return records


def test_bad_records_land_in_the_dlq_and_valid_ones_are_processed(isolated: Isolated) -> None:
    settings = isolated.settings
    events = sample_events(5, 60, seed=3, prefix=f"q{isolated.tag}")
    records = event_records(events)
    for i, (raw, _) in enumerate(BAD):
        records.insert(i * 10 + 5, (b"bad-key", raw))

    worker = WorkerProcess(worker_env(isolated.env), isolated.data_dir / "w.log",
                           settings.web_port).start()
    try:
        asyncio.run(produce(settings.kafka_bootstrap, settings.topic("events"), records))
        letters = asyncio.run(_read_dlq(settings.kafka_bootstrap, settings.topic("events.dlq"),
                                        len(BAD), 90))
        assert sorted(letter["reason"] for letter in letters) == sorted(r for _, r in BAD)
        by_payload = {base64.b64decode(letter["original_b64"]): letter for letter in letters}
        for raw, reason in BAD:
            letter = by_payload[raw]
            assert letter["reason"] == reason
            assert letter["stage"] == "validate"
            assert base64.b64decode(letter["original_key_b64"]) == b"bad-key"
            assert letter["source_topic"] == settings.topic("events")

        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        want = {}
        for e in events:
            want[e["customer_id"]] = want.get(e["customer_id"], 0) + 1
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = {c: int(client.hget(customer_key(c), "version") or 0) for c in want}
            if got == want:
                break
            time.sleep(0.5)
        assert got == want
    finally:
        worker.stop()
