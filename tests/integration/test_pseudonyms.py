"""Pseudonymous keys end to end: with PULSE_PSEUDONYM_KEY a worker keeps no raw customer id in
Redis or its tables, and the raw id still finds the customer for a lookup, an access request
and an erasure."""

from __future__ import annotations

import json
import os

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.core.pseudonym import pseudonym
from stream.infra.worker import WorkerProcess, worker_env
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, sample_file

pytestmark = pytest.mark.integration

KEY = "pseudonym-key-0123456789"


def _everything_in_redis(client: redis.Redis) -> str:
    dump = []
    for key in client.scan_iter(count=1000):
        read = {"hash": client.hgetall, "set": client.smembers, "string": client.get, "stream": client.xrange}
        kind = client.type(key)
        dump.append(f"{key} {read[kind](key) if kind in read else kind}")
    return "\n".join(dump)


def test_no_raw_id_in_redis_or_tables_and_the_raw_id_still_finds_the_customer(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env, "PULSE_PSEUDONYM_KEY": KEY}
    events, path = sample_file(isolated, 30, 600, seed=17, prefix="pn")
    expected = batch_raw_rfm(events)
    raw_ids = sorted(expected)
    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(path), "--wait", "--timeout", "300")
        stored = _everything_in_redis(client)
        assert stored.count("pulse:cust:p-") == len(raw_ids)
        assert not [cid for cid in raw_ids if cid in stored], "a raw customer id in Redis"
        subject = next(cid for cid in raw_ids if expected[cid].orders)
        hidden = pseudonym(KEY, subject)
        assert worker.get(f"/customers/{hidden}/")["orders"] == expected[subject].orders
        assert worker.get(f"/customers/{subject}/") is None  # the table holds only the pseudonym

        shown = json.loads(run_pulse(env, "profile", subject, "--json").stdout)
        assert shown["customer_id"] == hidden and int(shown["orders"]) == expected[subject].orders
        access = json.loads(run_pulse(env, "access", subject).stdout)
        assert access["customer_id"] == subject and access["stored_as"] == hidden
        assert access["state"]["orders"] == expected[subject].orders
        receipt = json.loads(run_pulse(env, "forget", subject, "--timeout", "60").stdout)
        assert receipt["stores"] and not client.exists(f"pulse:cust:{hidden}")
        assert worker.get(f"/customers/{hidden}/") is None
    finally:
        worker.stop()
    log = (isolated.data_dir / "w.log").read_text()
    assert KEY not in log
