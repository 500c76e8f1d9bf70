"""A worker stopped half-way (SIGTERM) and restarted ends with exactly the batch result,
in its table (recovered from the changelog) and in Redis."""

from __future__ import annotations

import asyncio
import shutil
import signal
from decimal import Decimal

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.sinks.redis import customer_key
from tests.integration.conftest import Isolated, caught_up, redis_behind_table, wait_for

pytestmark = pytest.mark.integration

CUSTOMERS = 50
EVENTS = 1000


def _redis_orders(client: redis.Redis, customer_ids: list[str]) -> dict[str, dict[str, str]]:
    pipe = client.pipeline(transaction=False)
    for cid in customer_ids:
        pipe.hgetall(customer_key(cid))
    return dict(zip(customer_ids, pipe.execute(), strict=True))


@pytest.mark.parametrize("wipe_local_state", [False, True], ids=["keep-rocksdb", "wiped-rocksdb"])
def test_sigterm_half_way_then_restart_equals_batch(isolated: Isolated, wipe_local_state: bool) -> None:
    settings = isolated.settings
    events = sample_events(CUSTOMERS, EVENTS, seed=11, prefix=f"r{isolated.tag}")
    expected = batch_raw_rfm(events)
    assert len(expected) == CUSTOMERS
    customer_ids = sorted(expected)
    records = event_records(events)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    log = isolated.data_dir / "worker.log"

    def applied_events() -> int:
        return sum(int(row.get("events", 0)) for row in _redis_orders(client, customer_ids).values())

    worker = WorkerProcess(worker_env(isolated.env), log, settings.web_port).start()
    try:
        asyncio.run(produce(settings.kafka, settings.topic("events"), records[: EVENTS // 2]))
        wait_for(lambda: applied_events() >= EVENTS // 4, 120, "the first quarter of events in Redis", log)
    finally:
        exit_code = worker.stop(signal.SIGTERM)
    assert exit_code == 0, "worker did not exit cleanly on SIGTERM"
    if wipe_local_state:
        # Lose the local RocksDB: the table must be rebuilt from its changelog topic.
        shutil.rmtree(isolated.data_dir / f"worker-{settings.web_port}")

    asyncio.run(produce(settings.kafka, settings.topic("events"), records[EVENTS // 2:]))
    worker = WorkerProcess(worker_env(isolated.env), log, settings.web_port).start()
    try:
        wait_for(lambda: applied_events() >= EVENTS, 180, f"all {EVENTS} events reflected in Redis", log,
                 diagnose=lambda: redis_behind_table(client, worker, customer_ids))
        caught_up(settings)  # any redelivered (duplicate) records have passed through too

        redis_rows = _redis_orders(client, customer_ids)
        for cid in customer_ids:
            want = expected[cid]
            table_value = worker.get(f"/customers/{cid}/")
            assert table_value is not None, f"{cid} missing from the table"
            assert table_value["orders"] == want.orders, cid
            assert Decimal(table_value["monetary_cents"]) / 100 == want.monetary, cid
            assert table_value["events"] == want.events, cid
            row = redis_rows[cid]
            assert int(row["orders"]) == want.orders, cid
            assert Decimal(row["monetary"]) == want.monetary, cid
            assert int(row["events"]) == want.events, cid
            assert row["last_purchase_at"] == want.last_purchase_at.isoformat(), cid
            assert row["first_purchase_at"] == want.first_purchase_at.isoformat(), cid
    finally:
        worker.stop()
