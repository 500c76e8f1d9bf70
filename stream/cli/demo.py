"""`pulse demo`: local services, a worker, a sample stream, and what reached Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

import redis

from stream.core.batch import batch_raw_rfm
from stream.infra import services
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.settings import Settings
from stream.sinks.redis import customer_key

BAD_RECORDS = [b'{"type": "purchase", "event_id": ', b"\xff\xfe not utf-8",
               b'{"type": "teleport", "event_id": "x", "customer_id": "c"}']


def run_demo(settings: Settings, *, customers: int, events: int, seed: int, timeout: float,
             keep_worker: bool, say: Callable[[str], None] = print) -> bool:
    say("== 1/4 services")
    for service in services.up(settings, say=say):
        say("   " + service.line())

    say("== 2/4 worker")
    log_file = settings.data_dir / "logs" / "demo-worker.log"
    worker = WorkerProcess(worker_env(), log_file, settings.web_port).start()
    say(f"   worker up (web http://127.0.0.1:{settings.web_port}/health/, log {log_file})")

    try:
        say(f"== 3/4 producing {events} sample events for {customers} customers "
            f"(+{len(BAD_RECORDS)} malformed ones, which go to {settings.topic('events.dlq')})")
        # Ids depend on the parameters, so runs with other parameters never mix with this one
        # (and the same command run again is recognised as redelivery).
        sample = sample_events(customers, events, seed=seed, prefix=f"demo{seed}-{customers}x{events}")
        records = event_records(sample) + [(b"bad", raw) for raw in BAD_RECORDS]
        asyncio.run(produce(settings.kafka_bootstrap, settings.topic("events"), records))

        expected = batch_raw_rfm(sample)
        say("== 4/4 reading back from Redis")
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        deadline = time.monotonic() + timeout
        rows: dict[str, dict[str, str]] = {}
        while True:
            pipe = client.pipeline(transaction=False)
            for customer_id in expected:
                pipe.hgetall(customer_key(customer_id))
            rows = dict(zip(expected, pipe.execute(), strict=True))
            caught_up = sum(1 for cid, row in rows.items()
                            if row and int(row.get("orders", -1)) == expected[cid].orders
                            and Decimal(row.get("monetary", "nan")) == expected[cid].monetary)
            if caught_up == len(expected) or time.monotonic() > deadline:
                break
            say(f"   {caught_up}/{len(expected)} customers up to date ...")
            time.sleep(1.0)

        say(f"{'customer':<24}{'orders':>7}{'monetary':>11}{'events':>8}  {'RFM':<5}{'segment':<20}"
            f"{'tier':<9}{'lifecycle':<12}{'last purchase':<26}")
        for customer_id, row in sorted(rows.items()):
            rfm = f"{row.get('r', '-')}{row.get('f', '-')}{row.get('m', '-')}"
            say(f"{customer_id:<24}{row.get('orders', '-'):>7}{row.get('monetary', '-'):>11}"
                f"{row.get('events', '-'):>8}  {rfm:<5}{row.get('segment', '-'):<20}"
                f"{row.get('value_tier', '-'):<9}{row.get('lifecycle', '-'):<12}"
                f"{row.get('last_purchase_at', '-'):<26}")
        say(f"{caught_up}/{len(expected)} customers in Redis equal the batch computation "
            f"(orders and monetary over the same events).")
        say(f"Look one up yourself:  .venv/bin/pulse profile {sorted(expected)[0]}")
        return caught_up == len(expected)
    finally:
        if keep_worker:
            say(f"worker left running (pid {worker.proc.pid if worker.proc else '?'})")
        else:
            worker.stop()
            say("worker stopped; Kafka and Redis keep running (`pulse down` stops them)")
