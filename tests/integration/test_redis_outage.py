"""A Redis outage delays the projection but loses nothing: the sink retries with backoff
and holds its Kafka offsets until Redis is back."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.infra import process
from stream.infra.redis import redis_ready, start_redis
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.sinks.redis import customer_key
from tests.integration.conftest import Isolated, events_in_redis, free_port, wait_for

pytestmark = pytest.mark.integration


def test_redis_down_mid_stream_then_back_ends_equal_to_the_tables(isolated: Isolated, tmp_path: Path) -> None:
    redis_dir = tmp_path / "own-redis"
    url = f"redis://127.0.0.1:{free_port()}/0"
    start_redis(url, redis_dir, say=lambda _: None)
    env = {**isolated.env, "PULSE_REDIS_URL": url}
    events = sample_events(30, 900, seed=21, prefix=f"o{isolated.tag}")
    expected = batch_raw_rfm(events)
    records = event_records(events)
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)

    applied = events_in_redis(client, expected)

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        asyncio.run(produce(isolated.settings.kafka, isolated.settings.topic("events"), records[:300]))
        wait_for(lambda: applied() >= 300, 90, "the first 300 events in Redis")

        process.stop(redis_dir, "redis")  # the outage
        assert not redis_ready(url)
        asyncio.run(produce(isolated.settings.kafka, isolated.settings.topic("events"), records[300:]))
        # the worker keeps processing into its tables while the sink retries
        last = events[-1]["customer_id"]
        wait_for(lambda: (worker.get(f"/customers/{last}/") or {}).get("events") == expected[last].events, 60,
                 "the last customer's events in the table during the outage")
        assert applied() == -1  # and Redis is still down: the table got there on its own

        start_redis(url, redis_dir, say=lambda _: None)  # back, with its append-only file
        wait_for(lambda: applied() == len(events), 120, "every event in Redis after the outage")
        for cid, want in expected.items():
            row = client.hgetall(customer_key(cid))
            table = worker.get(f"/customers/{cid}/")
            assert int(row["events"]) == table["events"] == want.events, cid
            assert int(row["version"]) == table["revision"], cid
            assert int(row["orders"]) == table["orders"] == want.orders, cid
            assert Decimal(row["monetary"]) == Decimal(table["monetary_cents"]) / 100 == want.monetary, cid
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
        process.stop(redis_dir, "redis")
