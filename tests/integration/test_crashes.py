"""Crashes mid-stream end with exactly the batch result, in the table and in Redis: a worker
killed with SIGKILL twice and restarted, and the Kafka broker stopped and started again
under a running worker."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import urllib.error
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from aiokafka.errors import KafkaError

from stream.core.batch import batch_raw_rfm
from stream.infra import process
from stream.infra.kafka import start_kafka
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.connect import KafkaAccess
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.sinks.redis import customer_key
from tests.integration.conftest import Isolated, events_in_redis, wait_for

pytestmark = pytest.mark.integration


def _produce_once_leaders_are_back(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    # A restarted broker answers metadata requests before it leads its partitions again; a
    # failed attempt may have written some records, which the worker counts as redeliveries.
    deadline = time.monotonic() + 60
    while True:
        try:
            asyncio.run(produce(KafkaAccess(bootstrap), topic, records))
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _differences(worker: WorkerProcess, client: redis.Redis, events: list[dict]) -> list[str]:
    """Where the table or Redis differs from the batch result (or Redis from the table)."""
    found = []
    for cid, want in batch_raw_rfm(events).items():
        try:
            table = worker.get(f"/customers/{cid}/")
        except urllib.error.HTTPError as exc:  # 503 while the group rebalances (a killed member expires)
            return [f"the worker answered {exc.code}"]
        row = client.hgetall(customer_key(cid))
        if table is None or not row:
            found.append(f"{cid}: table {table is not None}, Redis {bool(row)}")
            continue
        last = want.last_purchase_at.isoformat() if want.last_purchase_at else None
        wanted = (want.events, want.orders, want.monetary, last)
        in_table = (table["events"], table["orders"], Decimal(table["monetary_cents"]) / 100,
                    table["last_purchase_at"] and datetime.fromisoformat(table["last_purchase_at"]).isoformat())
        in_redis = (int(row["events"]), int(row["orders"]), Decimal(row["monetary"]), row.get("last_purchase_at"))
        if not wanted == in_table == in_redis or int(row["version"]) != table["revision"]:
            found.append(f"{cid}: batch {wanted}, table {in_table} rev {table['revision']}, "
                         f"Redis {in_redis} v{row['version']}")
    return found


def _assert_equals_batch(worker: WorkerProcess, client: redis.Redis, events: list[dict]) -> None:
    # Redis follows the table through the sinks: give the last batches (and the sweep or
    # rescoring they made due) a moment, then require exact agreement.
    deadline = time.monotonic() + 120
    while (found := _differences(worker, client, events)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not found, "\n".join(found[:10])


def test_sigkill_twice_mid_stream_then_restart_equals_batch(isolated: Isolated) -> None:
    settings = isolated.settings
    events = sample_events(60, 3000, seed=17, prefix=f"k{isolated.tag}")
    customer_ids = sorted({e["customer_id"] for e in events})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    applied = events_in_redis(client, customer_ids)
    log = isolated.data_dir / "worker.log"

    asyncio.run(produce(settings.kafka, settings.topic("events"), event_records(events)))
    for progress in (len(events) // 5, len(events) // 2):
        worker = WorkerProcess(worker_env(isolated.env), log, settings.web_port).start()
        try:
            wait_for(lambda p=progress: applied() >= p, 120, f"{progress} events in Redis", log)  # type: ignore[misc]
        finally:
            worker.stop(signal.SIGKILL)
    worker = WorkerProcess(worker_env(isolated.env), log, settings.web_port).start()
    try:
        wait_for(lambda: applied() >= len(events), 180, "every event in Redis after two kills", log)
        _assert_equals_batch(worker, client, events)
    finally:
        worker.stop()


def test_broker_stopped_mid_stream_then_started_equals_batch(isolated: Isolated, tmp_path: Path) -> None:
    # The test's own broker: stopping the session's would disturb the other tests.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bootstrap, kafka_dir = f"127.0.0.1:{port}", tmp_path / "own-kafka"
    start_kafka(bootstrap, kafka_dir, 4, say=lambda _: None)
    env = {**isolated.env, "PULSE_KAFKA_BOOTSTRAP": bootstrap}
    settings = isolated.settings
    events = sample_events(40, 1200, seed=23, prefix=f"b{isolated.tag}")
    records = event_records(events)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    applied = events_in_redis(client, sorted({e["customer_id"] for e in events}))
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "worker.log", settings.web_port).start()
    try:
        asyncio.run(produce(KafkaAccess(bootstrap), settings.topic("events"), records[:600]))
        wait_for(lambda: applied() >= 300, 120, "the first events in Redis", isolated.data_dir / "worker.log")
        process.stop(kafka_dir, "kafka")  # the broker goes away under the running worker
        start_kafka(bootstrap, kafka_dir, 4, say=lambda _: None)
        _produce_once_leaders_are_back(bootstrap, settings.topic("events"), records[600:])
        wait_for(lambda: applied() >= len(events), 240, "every event in Redis after the broker restart",
                 isolated.data_dir / "worker.log")
        _assert_equals_batch(worker, client, events)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker must ride out the outage"
    finally:
        worker.stop()
        process.stop(kafka_dir, "kafka")
