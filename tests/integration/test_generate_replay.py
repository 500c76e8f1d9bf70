"""`pulse generate` to a file, then `pulse replay --format jsonl --wait`: the generated
population's raw RFM values reach Redis exactly, and nothing is rejected."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.sinks.redis import customer_key
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration


def test_generated_population_replays_exactly(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env}
    out, truth = isolated.data_dir / "events.jsonl", isolated.data_dir / "truth.jsonl"
    isolated.data_dir.mkdir(parents=True, exist_ok=True)
    gen = run_pulse(env, "generate", "--customers", "150", "--days", "120", "--seed", "9",
                    "--prefix", f"g{isolated.tag}", "--out", str(out), "--truth", str(truth), timeout=120)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    hidden = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(hidden) == 150 and f"generated {len(events)} events" in gen.stdout

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(out), "--format", "jsonl", "--wait", "--timeout", "300", timeout=400)
        counters = worker.get("/counters/")
        assert counters["ingest.received"] == len(events)
        assert counters["ingest.accepted"] == len(events)
        assert counters["profile.applied"] == len(events)
    finally:
        worker.stop()

    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)
    for customer_id, want in batch_raw_rfm(events).items():
        row = client.hgetall(customer_key(customer_id))
        assert int(row["orders"]) == want.orders, customer_id
        assert Decimal(row["monetary"]) == want.monetary, customer_id
        assert int(row["events"]) == want.events, customer_id

    # `pulse export` writes the same values, one line per customer (ours among others in Redis)
    exported = isolated.data_dir / "export.jsonl"
    result = run_pulse(env, "export", "--out", str(exported), timeout=300)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    mine = {line["customer_id"]: line for line in lines if line["customer_id"].startswith(f"g{isolated.tag}-")}
    expected = batch_raw_rfm(events)
    assert set(mine) == set(expected)
    for customer_id, want in expected.items():
        line = mine[customer_id]
        assert (line["orders"], Decimal(line["monetary"])) == (want.orders, want.monetary)
        if want.orders:
            assert {"r", "f", "m", "segment", "value_tier", "lifecycle", "as_of_event_time"} <= set(line)
            assert line["first_purchase_at"] and line["last_purchase_at"]
    assert f"exported {len(lines)} customers" in result.stderr
