"""Cross-sell affinity end to end: a generated population with a planted rule (a purchase of
books is followed by one of music within 30 days, half the time), replayed through a real
worker; the rule the worker publishes equals the batch computation over the same events,
and customers who buy books but not music are offered music."""

from __future__ import annotations

import json
import os
import time

import pytest
import redis

from stream.core.affinity import WINDOW, rules
from stream.core.batch import batch_affinity
from stream.infra.worker import WorkerProcess, worker_env
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration


def test_a_planted_cross_sell_rule_is_found_with_the_batch_lift(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env, "PULSE_PURCHASE_FIT_SECONDS": "2"}
    out = isolated.data_dir / "events.jsonl"
    printed = run_pulse(env, "generate", "--customers", "150", "--days", "180", "--seed", "3", "--prefix",
                        f"x{isolated.tag}", "--cross-sell", "books:music:0.5", "--out", str(out)).stdout
    assert "music purchases planted after books" in printed
    events = [json.loads(line) for line in out.read_text().splitlines()]
    batch = batch_affinity(events, int(WINDOW.total_seconds()))
    expected = rules(batch.orders, batch.follows)
    assert (expected[0].antecedent, expected[0].consequent) == ("books", "music") and expected[0].lift >= 3

    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(out), "--wait", "--timeout", "600")
        deadline, document = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # the rules follow the population within PULSE_PURCHASE_FIT_SECONDS
            stored = client.get("pulse:affinity")
            document = json.loads(stored) if stored else None
            if document is not None and document["purchases"] == batch.orders["*"]:
                break
            time.sleep(0.5)
        printed = run_pulse(env, "affinity").stdout
    finally:
        worker.stop()
    assert document is not None and document["purchases"] == batch.orders["*"], document
    top = document["rules"][0]
    print(f"\nbooks -> music: streaming lift {top['lift']:.3f} over {document['purchases']} purchases, "
          f"batch {expected[0].lift:.3f}; confidence {top['confidence']:.3f}\n{printed}")
    assert (top["if"], top["then"]) == ("books", "music")
    assert abs(top["lift"] - expected[0].lift) <= 0.1 * expected[0].lift
    assert "books" in printed and "music" in printed

    # customers who bought books and never music are offered music (as of their last profile write)
    offered = []
    for customer_id, (orders, _) in batch.by_customer.items():
        if "books" in orders and "music" not in orders:
            suggestions = client.hget(f"pulse:cust:{customer_id}", "next_best_categories") or ""
            offered.append(suggestions.split(",")[0].split(":")[0] if suggestions else None)
    assert len(offered) >= 10 and offered.count("music") >= 0.8 * len(offered), offered
