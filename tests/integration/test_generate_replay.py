"""`pulse generate` to a file, then `pulse replay --format jsonl --wait`: the generated
population's raw RFM values reach Redis exactly, and nothing is rejected; an incident injected
into it (conversion cut to 30% for two weeks) reaches `pulse.monitoring` as a drift record
within days of event time; the export carries the purchase model's outlook."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.sinks.redis import customer_key
from tests.helpers import read_topic, read_whole_topic, run_pulse
from tests.integration.conftest import Isolated, wait_for

pytestmark = pytest.mark.integration

INCIDENT = datetime(2024, 1, 31, tzinfo=UTC)  # day 30 of the generated 60


def test_generated_population_replays_exactly(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env, "PULSE_PURCHASE_FIT_SECONDS": "2"}
    out, truth = isolated.data_dir / "events.jsonl", isolated.data_dir / "truth.jsonl"
    isolated.data_dir.mkdir(parents=True, exist_ok=True)
    gen = run_pulse(env, "generate", "--customers", "600", "--days", "60", "--seed", "9", "--seasonal-share", "0",
                    "--incident", f"conversion:0.3:{INCIDENT.date().isoformat()}:14",
                    "--prefix", f"g{isolated.tag}", "--out", str(out), "--truth", str(truth), timeout=120)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    hidden = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(hidden) == 600 and f"generated {len(events)} events" in gen.stdout

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(out), "--format", "jsonl", "--wait", "--timeout", "300", timeout=400)
        counters = worker.get("/counters/")
        assert counters["ingest.received"] == len(events)
        assert counters["ingest.accepted"] == len(events)
        assert counters["profile.applied"] == len(events)
        settings = isolated.settings
        monitoring = asyncio.run(read_topic(settings.kafka, settings.topic("monitoring"), 1, 30))
        drift = [r for r in monitoring if r["kind"] == "population_drift" and r["signal"] == "conversion"]
        assert drift, monitoring
        first = drift[0]
        print("\nfirst conversion record:", first)
        assert first["direction"] == "down" and first["change"] < -0.4, first
        assert INCIDENT - timedelta(days=3) <= datetime.fromisoformat(first["since"]).replace(tzinfo=UTC) <= INCIDENT
        # recorded within 3 days of event time of its start (the end of 2 February in the runs so far)
        assert datetime.fromisoformat(first["at"]) <= INCIDENT + timedelta(days=3), first
        wait_for(lambda: bool(worker.get("/rfm/")["purchase_model"]), 60, "the purchase model fitted")
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
            assert {"r", "f", "m", "segment", "value_tier", "lifecycle", "as_of_event_time", "p_alive",
                    "purchase_churn_probability", "expected_orders", "scores_as_of"} <= set(line)
            assert 0 <= line["purchase_churn_probability"] <= 1 and line["expected_orders"] >= 0
            assert line["first_purchase_at"] and line["last_purchase_at"]
    assert f"exported {len(lines)} customers" in result.stderr


def test_a_producer_fault_is_recorded_as_a_dead_letter_rate(isolated: Isolated) -> None:
    """`--incident invalid:0.05:...:3`: for three days one event in twenty is written without a
    readable event time. Each is dead-lettered, and the monitoring topic says the dead-letter
    rate rose, since the day it began."""
    env = {**os.environ, **isolated.env}
    out = isolated.data_dir / "events.jsonl"
    isolated.data_dir.mkdir(parents=True, exist_ok=True)
    gen = run_pulse(env, "generate", "--customers", "600", "--days", "60", "--seed", "9", "--seasonal-share", "0",
                    "--incident", f"invalid:0.05:{INCIDENT.date().isoformat()}:3",
                    "--prefix", f"f{isolated.tag}", "--out", str(out), timeout=120)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    invalid = sum(1 for e in events if e["event_time"] == "unknown")
    assert invalid > 20 and f"{invalid} events written invalid" in gen.stdout

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(out), "--format", "jsonl", "--wait", "--timeout", "300", timeout=400)
        counters = worker.get("/counters/")
        assert counters["ingest.received"] == len(events)
        assert counters["ingest.accepted"] == len(events) - invalid
        settings = isolated.settings
        letters = asyncio.run(read_whole_topic(settings.kafka, settings.topic("events.dlq"), settings.partitions))
        monitoring = asyncio.run(read_whole_topic(settings.kafka, settings.topic("monitoring")))
    finally:
        worker.stop()
    assert len(letters) == invalid and {letter["stage"] for letter in letters} == {"validate"}
    drift = [r for r in monitoring if r["kind"] == "population_drift"]
    print("\npopulation drift:", drift)
    rate = [r for r in drift if r["signal"] == "dead_letter_rate"]
    assert rate and rate[0]["direction"] == "up" and rate[0]["over_what"] == "records", drift
    # about 360 records a day: the rate is judged over pooled days of about 2,000 records
    assert INCIDENT - timedelta(days=6) <= datetime.fromisoformat(rate[0]["since"]).replace(tzinfo=UTC) <= INCIDENT
    assert datetime.fromisoformat(rate[0]["at"]) <= INCIDENT + timedelta(days=8), rate[0]
