"""Drift records a consumer can page on: a year of a population whose rates do not change
(`pulse generate --steady --seasonal-share 0`), replayed through a real worker, gives at most
three ``population_drift`` records in all (the incident side is in test_generate_replay.py)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from stream.infra.worker import WorkerProcess, worker_env
from tests.helpers import read_whole_topic, run_pulse
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stationary_year_raises_at_most_three_population_drift_records(isolated: Isolated, seed: int) -> None:
    env = {**os.environ, **isolated.env}
    out = isolated.data_dir / "events.jsonl"
    isolated.data_dir.mkdir(parents=True, exist_ok=True)
    run_pulse(env, "generate", "--customers", "250", "--days", "365", "--seed", str(seed), "--steady",
              "--seasonal-share", "0", "--prefix", f"s{isolated.tag}", "--out", str(out), timeout=120)
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(out), "--wait", "--timeout", "600", timeout=700)
        settings = isolated.settings
        monitoring = asyncio.run(read_whole_topic(settings.kafka, settings.topic("monitoring")))
    finally:
        worker.stop()
    drift = [r for r in monitoring if r["kind"] == "population_drift"]
    print(f"\n{len(drift)} population drift records:", Counter(r["signal"] for r in drift))
    for record in drift:
        print(" ", record)
    assert len(drift) <= 3, drift
