"""Behavioural clusters end to end: a generated population with four planted behaviour groups,
replayed through a real worker in two halves with a restart between them. The restarted worker
starts from the centroids published in Redis: over the same customers it publishes the same
clusters, and as the second half moves them, every cluster that still names the same behaviour
keeps its id. The customers' ``cluster`` fields agree with the planted groups."""

from __future__ import annotations

import json
import math
import os
import time

import pytest
import redis

from stream.core.clusters import FEATURES
from stream.infra.worker import WorkerProcess, worker_env
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, wait_for

pytestmark = pytest.mark.integration


def _settled(client: redis.Redis, newer_than: str = "", quiet: float = 6, timeout: float = 90) -> dict:
    """The clusters once a fit newer than ``newer_than`` has been published and no other for
    ``quiet`` seconds (they follow the population within PULSE_PURCHASE_FIT_SECONDS)."""
    deadline = time.monotonic() + timeout
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        stored = client.get("pulse:clusters")
        document = json.loads(stored) if stored else None
        if document != seen:
            seen, since = document, time.monotonic()
        elif seen is not None and seen["fitted_at"] > newer_than and time.monotonic() - since >= quiet:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"no settled clusters (newer than {newer_than!r}) within {timeout} s: {seen}")


def _centroid(document: dict, cluster: int, scales: list[float]) -> list[float]:
    centroid = document["clusters"][cluster]["centroid"]
    return [centroid[f] / s for f, s in zip(FEATURES, scales, strict=True)]


def test_clusters_match_planted_groups_and_keep_their_ids_across_a_restart(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env, "PULSE_PURCHASE_FIT_SECONDS": "2", "PULSE_CLUSTERS": "4"}
    out, truth = isolated.data_dir / "events.jsonl", isolated.data_dir / "truth.jsonl"
    run_pulse(env, "generate", "--customers", "160", "--days", "120", "--seed", "4", "--churn-share", "0",
              "--seasonal-share", "0", "--behaviour-groups", "--prefix", f"k{isolated.tag}", "--out", str(out),
              "--truth", str(truth))
    lines = out.read_text().splitlines()
    first, rest = isolated.data_dir / "first.jsonl", isolated.data_dir / "rest.jsonl"
    first.write_text("".join(line + "\n" for line in lines if json.loads(line)["event_time"] < "2024-03-15"))
    rest.write_text("".join(line + "\n" for line in lines if json.loads(line)["event_time"] >= "2024-03-15"))
    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w1.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(first), "--wait", "--timeout", "600")
        before = _settled(client)
    finally:
        worker.stop()
    assert before["k"] == 4 and sum(c["size"] for c in before["clusters"]) == before["sample"] > 50

    log = isolated.data_dir / "w2.log"
    worker = WorkerProcess(worker_env(env), log, isolated.settings.web_port).start()
    try:
        # before any new event: it refits over the customers it rebuilt, from the published centroids
        wait_for(lambda: "fitted over" in log.read_text(), 90, "the restarted worker's first cluster fit", log)
        again = _settled(client)
        run_pulse(env, "replay", str(rest), "--wait", "--timeout", "600")
        after = _settled(client, newer_than=again["fitted_at"])
        scored = json.loads(run_pulse(env, "clusters", "--json", "--truth", str(truth)).stdout)
    finally:
        worker.stop()

    assert f"starting from the published {before['version']}" in log.read_text()
    assert again["version"] == before["version"], (before, again)
    # the clusters moved with the second half; each pair of a cluster and the previous centroid
    # that are each other's nearest (the same behaviour) has kept the id. (Where the population's
    # structure changed, a group splitting as two others merge, no id can name the same behaviour
    # as before: those take the ids they are matched to, docs/api.md#behavioural-clusters.)
    assert after["k"] == 4
    distance = [[math.dist(_centroid(after, new, before["scales"]), _centroid(before, old, before["scales"]))
                 for old in range(4)] for new in range(4)]
    pairs = [(new, old) for new in range(4) for old in [min(range(4), key=distance[new].__getitem__)]
             if min(range(4), key=lambda other: distance[other][old]) == new]
    assert len(pairs) >= 2, distance
    for new, old in pairs:
        assert new == old, (distance, before["clusters"], after["clusters"])
    against = scored["against_truth"]
    print(f"\nclusters {after['version']}: adjusted Rand index {against['adjusted_rand']:.3f} against the planted "
          f"groups over {against['customers']} customers ({against['without_cluster']} without a cluster)")
    for cluster in after["clusters"]:
        print(f"  {cluster['id']}: {cluster['size']:>3} sampled, {cluster['description']}")
    assert against["customers"] >= 140
    assert against["adjusted_rand"] >= 0.6
