"""`pulse resync` rebuilds Redis from the tables after Redis lost everything."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.sinks.redis import customer_key, segment_key
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, caught_up, wait_for

pytestmark = pytest.mark.integration


def test_resync_restores_every_profile_and_segment_set(isolated: Isolated) -> None:
    redis_url = isolated.settings.redis_url  # the session's test database (empty now): this test flushes it
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    env = {**os.environ, **isolated.env, "PULSE_REDIS_URL": redis_url}
    events = sample_events(40, 800, seed=13, prefix=f"y{isolated.tag}")
    expected = batch_raw_rfm(events)

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        asyncio.run(produce(isolated.settings.kafka, isolated.settings.topic("events"),
                            event_records(events)))
        wait_for(lambda: all(client.hget(customer_key(c), "events") == str(w.events) for c, w in expected.items()),
                 120, "every event in Redis")
        # population scores settle after the last events (each partition moves to the final cuts)
        wait_for(lambda: all(p["settled"] for p in worker.get("/rfm/")["partitions"].values()), 60,
                 "population scores settled")
        caught_up(isolated.settings)
        before = {c: client.hgetall(customer_key(c)) for c in expected}
        segments = {c: row["segment"] for c, row in before.items()}

        client.flushdb()  # Redis loses everything
        result = run_pulse(env, "resync", "--timeout", "300", timeout=400)
        assert "resynced" in result.stdout

        for customer_id, want in expected.items():
            row = client.hgetall(customer_key(customer_id))
            assert int(row["orders"]) == want.orders and Decimal(row["monetary"]) == want.monetary, customer_id
            table = worker.get(f"/customers/{customer_id}/")
            assert int(row["version"]) == table["revision"], customer_id
            assert row["segment"] == segments[customer_id] == table["tags"]["segment"]
            assert customer_id in client.smembers(segment_key(row["segment"]))
        counters = worker.get("/counters/")
        assert counters["resync.published"] == len(expected)
    finally:
        worker.stop()
