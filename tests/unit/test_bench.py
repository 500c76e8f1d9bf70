"""The benchmark's own arithmetic: the shifted sample stream, latencies and the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from stream.cli.base import Progress
from stream.cli.bench import (
    Bench,
    BenchResult,
    cpu_seconds,
    latencies_ms,
    percentiles,
    probe,
    process_tree,
    recent_events,
    rss_mb,
)
from stream.settings import Settings


def test_the_sample_stream_ends_a_minute_ago_in_its_own_order() -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)
    events = recent_events(20, 500, "bench-x", now)
    times = [datetime.fromisoformat(e["event_time"]) for e in events]
    assert times == sorted(times)
    assert times[-1] == now - timedelta(minutes=1)
    assert len({e["customer_id"] for e in events}) == 20


def test_a_probe_is_a_valid_event_of_that_customer_at_now() -> None:
    from schemas import parse_event

    now = datetime(2030, 6, 1, tzinfo=UTC)
    event = parse_event(json.dumps(probe("c1", 3, "bench-x", now)))
    assert (event.customer_id, event.event_time, event.event_id) == ("c1", now, "bench-x-probe-3")


def test_latencies_skip_customers_never_written_and_percentiles_use_nearest_rank() -> None:
    sent = {f"c{i}": 100.0 + i for i in range(10)}
    written: dict[str, str | None] = {f"c{i}": str(int((100.0 + i) * 1000 + 10 * (i + 1))) for i in range(9)}
    written["c9"] = None
    values = latencies_ms(sent, written)
    assert sorted(values) == [10.0 * k for k in range(1, 10)]
    assert percentiles(values) == {"p50": 50.0, "p99": 90.0, "max": 90.0, "count": 9.0}


def test_the_report_and_its_json_carry_the_ratio() -> None:
    result = BenchResult(events=1000, customers=100, workers=1, partitions=4, raw_events_per_s=100_000.0,
                         pipeline_events_per_s=2_000.0, pipeline_seconds=0.5, offered_events_per_s=1_000.0,
                         latency_ms={"p50": 40.0, "p99": 90.0, "count": 100.0}, rss_mb=[180.0],
                         cpu_ms_per_event=1.234, state_bytes_per_customer=2100.0)
    text = "\n".join(result.lines())
    assert "2,000 events/s" in text and "0.0200" in text and "p99 90 ms" in text and "180 MB" in text
    assert "1.23 ms per event" in text
    assert result.to_json()["ratio"] == 0.02


def test_progress_never_goes_back() -> None:
    shown: list[str] = []
    progress = Progress(shown.append, "pipeline")
    for behind in (100, 40, 100):
        progress.last_shown = 0.0  # show every call
        progress.lag(behind)
    assert "0%" in shown[0] and "60%" in shown[1] and "60%" in shown[2]


def test_the_pipeline_ends_at_the_first_report_of_no_lag_since_the_last_lag() -> None:
    # the bench's pipeline time: not the confirming poll a settling wait later
    progress = Progress(lambda _: None, "pipeline")
    assert progress.caught_up_at is None
    progress.lag(5)
    progress.lag(0)
    first = progress.caught_up_at
    assert first is not None
    progress.lag(0)
    assert progress.caught_up_at == first
    progress.lag(3)  # a sweep tick's records: not caught up after all
    assert progress.caught_up_at is None
    progress.lag(0)
    assert progress.caught_up_at is not None and progress.caught_up_at > first


def test_every_worker_of_a_run_accepts_the_same_token() -> None:
    # a worker forwards a request for a customer another worker holds, with the caller's token
    bench = Bench(Settings(), redis_db=13)
    try:
        tokens = {bench.env(port)["PULSE_API_TOKENS"] for port in (6100, 6101)}
        assert len(tokens) == 1 and tokens.pop().startswith("bench-")
    finally:
        shutil.rmtree(bench.data_dir)


def test_a_process_cpu_time_counts_its_work_not_its_waiting() -> None:
    before = cpu_seconds(os.getpid())
    time.sleep(0.3)
    slept = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    worked = cpu_seconds(os.getpid())
    assert slept - before < 0.1 and worked - slept >= 0.25


def test_a_worker_counts_with_its_child_processes_cpu_and_memory() -> None:
    # a child that holds 100 MB and then works for 0.4 s of CPU, as a worker's fit process does
    child = subprocess.Popen([sys.executable, "-c", "import time\nheld = bytearray(100 * 2**20)\n"
                              "deadline = time.process_time() + 0.4\nwhile time.process_time() < deadline: pass\n"
                              "print('done', flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        assert child.pid in process_tree(os.getpid())
        assert cpu_seconds(child.pid) >= 0.35 and rss_mb(child.pid) > 100
        own_cpu = time.process_time()
        assert cpu_seconds(os.getpid()) >= own_cpu + 0.35 - 0.05  # the child's with ours (clock ticks of 10 ms)
        assert rss_mb(os.getpid()) - rss_mb(child.pid) > 20  # the child's 100 MB with our own
    finally:
        child.kill()
        child.wait()
