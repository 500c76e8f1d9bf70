"""A worker's tables hold in memory only their configured RocksDB write buffers: written table
data beyond them is flushed to disk (Faust's defaults held 64 MiB × 3 per table partition, so
memory grew with every customer written)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from stream.core.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from tests.integration.conftest import Isolated, caught_up

pytestmark = pytest.mark.integration

WRITE_BUFFER_MB = 1
CUSTOMERS = 600
EVENTS = 6000


def _option(options_file: Path, name: str) -> int:
    found = re.search(rf"^\s*{name}=(\d+)\s*$", options_file.read_text(), re.MULTILINE)
    assert found, f"{name} not in {options_file}"
    return int(found.group(1))


def test_table_writes_beyond_the_write_buffer_go_to_disk(isolated: Isolated) -> None:
    settings = isolated.settings
    env = {**isolated.env, "PULSE_ROCKSDB_WRITE_BUFFER_MB": str(WRITE_BUFFER_MB), "PULSE_ROCKSDB_BLOCK_CACHE_MB": "2"}
    events = sample_events(CUSTOMERS, EVENTS, seed=4, prefix=f"m{isolated.tag}")
    log = isolated.data_dir / "worker.log"
    worker = WorkerProcess(worker_env(env), log, settings.web_port).start()
    try:
        asyncio.run(produce(settings.kafka, settings.topic("events"), event_records(events)))
        caught_up(settings, timeout=300)
        some = sorted(batch_raw_rfm(events))[0]
        state = worker.get(f"/customers/{some}/")
        assert state is not None and state["events"] == sum(e["customer_id"] == some for e in events)

        databases = sorted((isolated.data_dir / f"worker-{settings.web_port}").rglob("customer-state-*.db"))
        assert len(databases) == settings.partitions
        for database in databases:
            options = max(database.glob("OPTIONS-*"))  # the newest
            assert _option(options, "write_buffer_size") == WRITE_BUFFER_MB << 20
            assert _option(options, "max_write_buffer_number") == 2
        # while it runs: ~2.3 KB per state written, once per customer per batch, is several MiB
        # per partition, so each partition's memtable filled and was flushed to an SST file
        flushed = [database for database in databases if list(database.glob("*.sst"))]
        assert flushed == databases, f"no SST file in {sorted(set(databases) - set(flushed))}"
    finally:
        worker.stop()
