"""Population scoring with two workers: each owns some partitions, publishes its share of the
RFM population, and reads the other's, so both score against the whole population: the
exported r, f, m agree with the exact batch scores over all customers."""

from __future__ import annotations

import os

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.core.rfm import RawRfmValues, exact_scores
from stream.infra.worker import WorkerProcess, worker_env
from stream.sinks.redis import customer_key
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, caught_up, free_port, sample_file, wait_for

pytestmark = pytest.mark.integration


def test_two_workers_score_against_the_merged_population(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env}
    events, path = sample_file(isolated, 300, 3000, seed=21, prefix="w")
    expected = batch_raw_rfm(events)
    raw = {cid: RawRfmValues(int(v.last_purchase_at.timestamp() // 86_400), v.orders, int(v.monetary * 100))
           for cid, v in expected.items() if v.orders and v.last_purchase_at is not None}
    exact = exact_scores(raw)

    second_port = free_port()
    first = WorkerProcess(worker_env(env), isolated.data_dir / "w1.log", isolated.settings.web_port).start()
    second = WorkerProcess(worker_env({**env, "PULSE_WEB_PORT": str(second_port)}), isolated.data_dir / "w2.log",
                           second_port).start()
    workers = (first, second)
    try:
        # Both hold partitions before the events arrive: the subject here is scoring against
        # the merged population, not a rebalance under load (see test_restart_recovery.py).
        def shared_out() -> bool:
            answers = [w.get("/health/") for w in workers]
            if not all(a and not a["rebalancing"] for a in answers):
                return False
            owned = [set(a["partitions"]) for a in answers]
            return bool(owned[0] and owned[1] and not owned[0] & owned[1]
                        and len(owned[0] | owned[1]) == isolated.settings.partitions)

        wait_for(shared_out, 120, "both workers holding their share of the partitions")
        done = run_pulse(env, "replay", str(path), "--wait", "--timeout", "600", check=False)
        if done.returncode != 0:
            dumps = "\n".join(f"worker {n} tasks:\n{w.dump_tasks()}" for n, w in enumerate(workers, 1))
            raise AssertionError(f"{done.stdout}{done.stderr}\n{dumps}")

        def merged_everywhere() -> bool:
            answers = [w.get("/rfm/") for w in workers]
            return all(a["population"] == len(exact) and all(p["settled"] for p in a["partitions"].values())
                       for a in answers)

        wait_for(merged_everywhere, 90, "both workers scoring against all customers")
        answers = [w.get("/rfm/") for w in workers]
        owned = [set(a["partitions"]) for a in answers]
        assert owned[0] and owned[1] and not owned[0] & owned[1], owned  # the partitions are shared out
        assert all(a["remote_partitions"] for a in answers)  # each read the other's share
        caught_up(isolated.settings)
        client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)
        rows = {cid: client.hgetall(customer_key(cid)) for cid in exact}
        agree = sum(1 for cid, s in exact.items()
                    if (int(rows[cid]["r"]), int(rows[cid]["f"]), int(rows[cid]["m"])) == (s.r, s.f, s.m))
        assert agree / len(exact) >= 0.98, (agree, len(exact))
    finally:
        second.stop()
        first.stop()
