"""Abnormal-transaction risk end to end: planted abnormal purchases in a generated population,
replayed through a real worker, come back as suspicious_transaction alerts in Redis with the
required recall and precision, each with its explanation."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
import redis

from stream.infra.worker import WorkerProcess, worker_env
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration


def test_planted_abnormal_purchases_raise_suspicious_transaction_alerts(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env}
    out, planted_file = isolated.data_dir / "events.jsonl", isolated.data_dir / "anomalies.jsonl"
    printed = run_pulse(env, "generate", "--customers", "150", "--days", "365", "--seed", "9", "--prefix",
                        f"s{isolated.tag}", "--anomalies", "0.5", "--out", str(out), "--anomalies-out",
                        str(planted_file)).stdout
    planted = [json.loads(line) for line in planted_file.read_text().splitlines()]
    assert f"{len(planted)} abnormal purchases planted" in printed and len(planted) >= 20
    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(out), "--wait", "--timeout", "600")
        alerts = [fields for _, fields in client.xrange("pulse:alerts")
                  if fields["kind"] == "suspicious_transaction"]
    finally:
        worker.stop()
    flagged = {(a["customer_id"], datetime.fromisoformat(a["event_time"])) for a in alerts}
    truth = {(p["customer_id"], datetime.fromisoformat(p["event_time"])) for p in planted}
    found = flagged & truth
    print(f"\n{len(truth)} planted, {len(flagged)} flagged: recall {len(found) / len(truth):.3f}, "
          f"precision {len(found) / max(1, len(flagged)):.3f}")
    assert len(found) >= 0.8 * len(truth) and len(found) >= 0.5 * len(flagged)
    for alert in alerts:
        assert float(alert["score"]) >= float(alert["threshold"]) == 4.0
        assert json.loads(alert["explanation"])[0]["feature"] in ("amount", "velocity", "new_channel")
        assert alert["holdout"] == "False" and "usual purchase" in alert["reason"]
