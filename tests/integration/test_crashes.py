"""Crashes mid-stream end with exactly the batch result, in the table and in Redis: a worker
killed with SIGKILL twice and restarted, and the Kafka broker stopped and started again
under a running worker. An output topic that refuses a batch's records loses none of its
alerts: the batch's state is not stored, so a restarted worker raises them again."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import yaml
from aiokafka.errors import KafkaError

from agents.batching import EXIT_BATCH_FAILED
from stream.core.batch import batch_raw_rfm
from stream.core.rules import load_rules
from stream.infra import process
from stream.infra.kafka import start_kafka
from stream.infra.process import tail
from stream.infra.topics import ensure_topics
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.access import read_keyed
from stream.io.connect import KafkaAccess
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.sinks.redis import customer_key
from tests.integration.conftest import Isolated, caught_up, events_in_redis, redis_behind_table, wait_for

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
        wait_for(lambda: applied() >= len(events), 180, "every event in Redis after two kills", log,
                 diagnose=lambda: redis_behind_table(client, worker, customer_ids))
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


async def _set_topic_config(kafka: KafkaAccess, topic: str, name: str, value: str | None) -> None:
    """Set (or, with None, remove) a topic-level config override."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        # the (non-incremental) AlterConfigs replaces the topic's overrides: {} removes them all
        configs = {name: value} if value is not None else {}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        await admin.close()


async def _alert_ids_on(kafka: KafkaAccess, topic: str) -> list[str]:
    return [json.loads(value)["alert_id"] for value in await read_keyed(kafka, topic, None)]


def test_alerts_refused_by_the_broker_are_raised_again_after_a_restart(isolated: Isolated) -> None:
    """The alerts topic refuses every record (its ``max.message.bytes`` is too small) while the
    Redis outbox accepts the same batch's writes: the batch fails and its state is not stored.
    The worker stops rather than go on without that batch. Once the topic accepts records again,
    a restarted worker processes those events again, and every alert that reached Redis (through
    the outbox, which accepted the failed batch's writes) is on the alerts topic too, by the same
    ``alert_id``. (Before the outputs were sent first, the state was stored anyway and the
    redelivered events raised nothing.)

    The ids are the same because the redo sees the same inputs: fixed RFM thresholds (no
    population rescoring) and no sweep tick or purchase-model fit during the test; a time-driven
    change that falls between the two runs differently would give an alert a later version."""
    settings = isolated.settings
    rules_file = isolated.data_dir / "fixed-rules.yaml"
    rules_file.parent.mkdir(parents=True, exist_ok=True)
    rules_file.write_text(yaml.safe_dump(load_rules().with_scoring_mode("fixed").model_dump(mode="json")))
    env = worker_env({**isolated.env, "PULSE_RULES_FILE": str(rules_file), "PULSE_SWEEP_SECONDS": "3600",
                      "PULSE_PURCHASE_FIT_SECONDS": "3600"})
    events = sample_events(20, 400, seed=2, prefix=f"a{isolated.tag}")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    log = isolated.data_dir / "worker.log"
    alerts_topic = settings.topic("alerts")
    asyncio.run(ensure_topics(settings))
    asyncio.run(_set_topic_config(settings.kafka, alerts_topic, "max.message.bytes", "64"))
    asyncio.run(produce(settings.kafka, settings.topic("events"), event_records(events)))

    worker = WorkerProcess(env, log, settings.web_port).start()
    try:  # the worker does not go on without the batch: it stops, saying why
        assert worker.proc is not None and worker.proc.wait(120) == EXIT_BATCH_FAILED, tail(log, 60)
        assert "MessageSizeTooLargeError" in log.read_text()
        assert not asyncio.run(_alert_ids_on(settings.kafka, alerts_topic))
    finally:
        worker.stop()
    asyncio.run(_set_topic_config(settings.kafka, alerts_topic, "max.message.bytes", None))

    worker = WorkerProcess(env, log, settings.web_port).start()
    try:
        caught_up(settings, timeout=180)
        in_redis = {fields["alert_id"] for _, fields in client.xrange("pulse:alerts")}
        on_topic = asyncio.run(_alert_ids_on(settings.kafka, alerts_topic))
        assert in_redis, "the sample raises alerts"
        assert in_redis <= set(on_topic), sorted(in_redis - set(on_topic))[:10]
        _assert_equals_batch(worker, client, events)
    finally:
        worker.stop()
