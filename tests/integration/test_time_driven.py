"""Time-driven transitions: a customer who stops buying moves from Champions down to Can't
Lose Them and from growing to declining to churned, on schedule and with no event of their
own, as other customers' events move event time forward; the sweeper visits only them."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
import redis
import yaml

from stream.core.rules import load_rules
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.sinks.redis import customer_key, segment_key
from tests.integration.conftest import Isolated, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _purchase(customer: str, when: datetime, n: int) -> dict:
    return {"type": "purchase", "event_id": f"{customer}-{n}", "customer_id": customer,
            "event_time": when.isoformat(), "order_id": f"{customer}-o{n}", "total": "120.00"}


def test_a_customer_who_stops_moves_on_schedule(isolated: Isolated) -> None:
    stopper = f"stop-{isolated.tag}"
    tickers = [f"tick-{isolated.tag}-{i}" for i in range(12)]
    events = [_purchase(stopper, T0 + timedelta(weeks=w), w) for w in range(10)]
    for day in range(441):  # the others buy every day for 14 months: event time moves on
        events += [_purchase(t, T0 + timedelta(days=day, hours=i), day) for i, t in enumerate(tickers)]
    events.sort(key=lambda e: e["event_time"])
    last = T0 + timedelta(weeks=9)

    # Fixed thresholds: recency scores move with time alone (population scores move only
    # when other customers do; tests/integration/test_replay_cdnow.py covers those).
    rules_file = isolated.data_dir / "fixed-rules.yaml"
    rules_file.parent.mkdir(parents=True, exist_ok=True)
    rules_file.write_text(yaml.safe_dump(load_rules().with_scoring_mode("fixed").model_dump(mode="json")))
    env = {**os.environ, **isolated.env, "PULSE_SWEEP_SECONDS": "1", "PULSE_RULES_FILE": str(rules_file)}
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)
    try:
        asyncio.run(produce(isolated.settings.kafka, isolated.settings.topic("events"),
                            event_records(events)))
        wait_for(lambda: client.hget(customer_key(stopper), "segment") == "Can't Lose Them", 180,
                 "the stopper's move to Can't Lose Them")
        row = client.hgetall(customer_key(stopper))
        assert (row["lifecycle"], row["r"], row["f"], row["m"], row["value_tier"]) == (
            "churned", "1", "5", "5", "diamond")
        assert stopper in client.smembers(segment_key("Can't Lose Them"))
        for other in ("Champions", "Loyal", "At Risk"):
            assert stopper not in client.smembers(segment_key(other))

        # The tag stream has its own sink agent: it may trail the hash by a moment.
        def stopper_changes() -> list[dict[str, str]]:
            return [fields for _, fields in client.xrange("pulse:tags") if fields["customer_id"] == stopper]

        wait_for(lambda: any(c["new"] == "Can't Lose Them" for c in stopper_changes()), 30,
                 "the last segment change in the tag stream")
        changes = stopper_changes()
        timed = [(c["tag"], c["old"], c["new"], datetime.fromisoformat(c["event_time"]))
                 for c in changes if c["reason"] == "time"]
        micro = timedelta(microseconds=1)
        assert [t for t in timed if t[0] == "segment"] == [
            ("segment", "Champions", "Loyal", (last + timedelta(days=90) + micro)),
            ("segment", "Loyal", "At Risk", (last + timedelta(days=180) + micro)),
            ("segment", "At Risk", "Can't Lose Them", (last + timedelta(days=365) + micro)),
        ]
        assert [t for t in timed if t[0] == "lifecycle"] == [
            ("lifecycle", "growing", "declining", (last + timedelta(days=90))),
            ("lifecycle", "declining", "churned", (last + timedelta(days=180))),
        ]
        assert len({c["change_id"] for c in changes}) == len(changes)
        # Only the stopper was ever due; the sweeper read a handful of index entries, not
        # 13 customers x 441 days. The stopper has 12 boundaries in those months (R score,
        # lifecycle, segment and churn thresholds; two pairs in the same hour): how many
        # visits they take depends on how far event time moved between two ticks, never more.
        counters = worker.get("/counters/")
        print("sweeper counters:", {k: v for k, v in counters.items() if k.startswith("sweeper.")})
        assert 1 <= counters["sweeper.visited"] <= 12
        assert counters["sweeper.index_reads"] <= 30
        assert all(c["reason"] != "time" for _, c in client.xrange("pulse:tags") if c["customer_id"] in tickers)
    finally:
        worker.stop()
