"""End-to-end benchmark: one worker, real Kafka and Redis (run `pulse up` first).

    .venv/bin/python -m tests.bench.bench_pipeline [--events 20000] [--customers 2000]

Produces a sample stream, then measures how long one worker takes to validate, fold into
the state table and mirror into Redis every event (until its consumer group has caught up).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
import uuid
from pathlib import Path

from stream.infra.kafka import kafka_ready
from stream.infra.redis import redis_ready
from stream.infra.worker import WorkerProcess, worker_env
from stream.produce import event_records, produce
from stream.replay import wait_until_processed
from stream.sample import sample_events
from stream.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()

    base = load_settings()
    if not kafka_ready(base.kafka_bootstrap) or not redis_ready(base.redis_url):
        raise SystemExit(f"Kafka ({base.kafka_bootstrap}) and Redis ({base.redis_url}) must be running: "
                         "run `.venv/bin/pulse up` first")
    tag = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PULSE_TOPIC_PREFIX": f"bench{tag}.", "PULSE_APP_ID": f"bench-{tag}",
           "PULSE_DATA_DIR": str(data_dir), "PULSE_WEB_PORT": str(port), "PULSE_LOG_LEVEL": "warning",
           "PULSE_REDIS_URL": base.redis_url.rsplit("/", 1)[0] + "/7"}
    records = event_records(sample_events(args.customers, args.events, seed=5, prefix=f"b{tag}"))

    start = time.perf_counter()
    asyncio.run(produce(base.kafka_bootstrap, f"bench{tag}.events", records))
    produced = time.perf_counter() - start
    worker = WorkerProcess(worker_env(env), data_dir / "worker.log", port)
    try:
        start = time.perf_counter()
        worker.start()
        started = time.perf_counter() - start
        behind = asyncio.run(wait_until_processed(
            base.kafka_bootstrap, f"bench-{tag}",
            [f"bench{tag}.{t}" for t in ("events", "customer-events")], timeout=1800))
        total = time.perf_counter() - start
    finally:
        worker.stop()
    if behind:
        raise SystemExit(f"worker did not catch up (behind: {behind}); see {data_dir / 'worker.log'}")
    print(f"pipeline benchmark: {args.events} events, {args.customers} customers, one worker, "
          f"{base.partitions} partitions")
    print(f"  produce                {args.events / produced:>10,.0f} events/s")
    print(f"  worker start           {started:>10.1f} s")
    print(f"  validate+state+Redis   {args.events / (total - started):>10,.0f} events/s "
          f"({total - started:.1f} s after start)")


if __name__ == "__main__":
    main()
