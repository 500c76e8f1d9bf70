"""`pulse bench` runs end to end on the real services, reports every figure, and leaves no
topic, consumer data or Redis key behind."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient

from stream.io.connect import KafkaAccess
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration



async def _topics(kafka: KafkaAccess) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def _empty_database(redis_url: str) -> int:
    """The test's own Redis database (empty when the test starts), as the benchmark's."""
    assert not redis.Redis.from_url(redis_url).dbsize()
    return int(redis_url.rsplit("/", 1)[1])


def test_bench_reports_every_figure_and_cleans_up(isolated: Isolated, tmp_path: Path) -> None:
    bench_db = _empty_database(isolated.settings.redis_url)
    kafka = isolated.settings.kafka
    before = {t for t in asyncio.run(_topics(kafka)) if t.startswith("bench-")}
    out = tmp_path / "bench.json"
    env = {**os.environ, **isolated.env}
    done = run_pulse(env, "bench", "--events", "1500", "--customers", "150", "--redis-db", str(bench_db),
                     "--json", str(out), timeout=600)
    assert "raw consume + decode" in done.stdout and "pipeline" in done.stdout and "latency at" in done.stdout
    result = json.loads(out.read_text())
    assert result["events"] == 1500 and result["workers"] == 1
    assert result["raw_events_per_s"] > result["pipeline_events_per_s"] > 0
    assert 0 < result["ratio"] < 1
    assert result["latency_ms"]["count"] > 0 and result["latency_ms"]["p99"] >= result["latency_ms"]["p50"] > 0
    assert result["rss_mb"][0] > 50 and result["state_bytes_per_customer"] > 100
    assert 0 < result["cpu_ms_per_event"] < 1000 and "ms per event" in done.stdout

    after = {t for t in asyncio.run(_topics(kafka)) if t.startswith("bench-")}
    assert after <= before, f"topics left behind: {sorted(after - before)}"
    assert redis.Redis.from_url(isolated.settings.redis_url.rsplit("/", 1)[0] + f"/{bench_db}").dbsize() == 0


def test_bench_refuses_a_database_in_use(isolated: Isolated) -> None:
    bench_db = _empty_database(isolated.settings.redis_url)
    client = redis.Redis.from_url(isolated.settings.redis_url.rsplit("/", 1)[0] + f"/{bench_db}")
    client.set("someone-elses-key", "1")
    try:
        env = {**os.environ, **isolated.env}
        done = run_pulse(env, "bench", "--events", "100", "--customers", "10", "--redis-db", str(bench_db),
                         timeout=120, check=False)
        assert done.returncode != 0 and "not empty" in done.stderr and "--redis-db" in done.stderr
        assert client.get("someone-elses-key") == b"1"
    finally:
        client.delete("someone-elses-key")
