"""`pulse replay` of the real CDNOW purchase log (shipped in the `lifetimes` wheel) with --wait:
every customer's raw RFM values in Redis equal the batch computation, and replaying the
same file again changes nothing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from stream.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.replay import read_cdnow, select
from stream.sinks.redis import customer_key
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration



def cdnow_file() -> Path:
    # Located without importing lifetimes (which would import pandas and scipy).
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin, "the lifetimes wheel (dev extra) ships the CDNOW log"
    return Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"


def _replay(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", str(cdnow_file()), "--format", "cdnow",
         "--wait", "--timeout", "600"],
        env=env, capture_output=True, text=True, timeout=900)


def _redis_rows(client: redis.Redis, customer_ids: list[str]) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for start in range(0, len(customer_ids), 2000):
        chunk = customer_ids[start:start + 2000]
        pipe = client.pipeline(transaction=False)
        for cid in chunk:
            pipe.hgetall(customer_key(cid))
        rows.update(zip(chunk, pipe.execute(), strict=True))
    return rows


def test_cdnow_replay_matches_batch_and_a_second_replay_changes_nothing(isolated: Isolated) -> None:
    redis_url = isolated.settings.redis_url.rsplit("/", 1)[0] + "/8"  # CDNOW ids are fixed
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    env = {**os.environ, **isolated.env, "PULSE_REDIS_URL": redis_url}
    events = select(read_cdnow(cdnow_file()), None)
    assert len(events) == 69_659  # the whole log, January 1997 to June 1998
    expected = batch_raw_rfm(events)
    customer_ids = sorted(expected)

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        first = _replay(env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"produced {len(events)} events for {len(expected)} customers" in first.stdout
        assert "processed" in first.stdout

        rows = _redis_rows(client, customer_ids)
        mismatches = []
        for cid in customer_ids:
            want, row = expected[cid], rows[cid]
            got = (int(row.get("orders", -1)), Decimal(row.get("monetary", "NaN")),
                   row.get("first_purchase_at"), row.get("last_purchase_at"))
            if got != (want.orders, want.monetary, want.first_purchase_at.isoformat(),
                       want.last_purchase_at.isoformat()):
                mismatches.append((cid, got, want))
        assert not mismatches, f"{len(mismatches)} customers differ, e.g. {mismatches[:3]}"

        # The watermark: the oldest partition's newest event time minus the 3-day lateness.
        # Every partition has purchases in the last days of the log (it ends 1998-06-30).
        mark = worker.get("/watermark/")
        assert len(mark["partition_max_event_time"]) == isolated.settings.partitions
        assert max(mark["partition_max_event_time"].values()) == "1998-06-30T00:00:00+00:00"
        assert "1998-06-20T00:00:00+00:00" <= mark["watermark"] <= "1998-06-27T00:00:00+00:00"

        second = _replay(env)
        assert second.returncode == 0, second.stdout + second.stderr
        again = _redis_rows(client, customer_ids)
        changed = [cid for cid in customer_ids if again[cid]["orders"] != rows[cid]["orders"]
                   or again[cid]["events"] != rows[cid]["events"]]
        assert not changed, f"a second replay changed {len(changed)} customers, e.g. {changed[:5]}"
    finally:
        worker.stop()
