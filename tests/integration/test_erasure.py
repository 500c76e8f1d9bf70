"""`pulse forget` on a running pipeline of two workers: within a minute nothing about the
customer is left in Redis, in the tables (also after a restart that rebuilds them from the
changelogs), or as a live key of the state changelog; the population excludes them, nobody
else changes, the receipt lists every store, and later events do not bring the profile back
(unless they carry fresh analytics consent)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
import redis

from stream.core.batch import batch_raw_rfm
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.access import read_keyed
from stream.io.produce import produce
from stream.settings import Settings
from stream.sinks.erasure import receipt_key
from stream.sinks.redis import KEY_PREFIX, customer_key
from stream.topology import changelog_topic
from tests.helpers import read_topic, run_pulse
from tests.integration.conftest import Isolated, caught_up, free_port, sample_file, wait_for

pytestmark = pytest.mark.integration

STREAMS = ("tags", "alerts")
KEPT = ("orders", "monetary", "events", "last_purchase_at")


def _mentions(client: redis.Redis, customer_id: str) -> dict[str, int]:
    """Where Redis still mentions the customer, and how often."""
    found = {"hash": int(client.exists(customer_key(customer_id))),
             "segment_sets": sum(int(client.sismember(key, customer_id))
                                 for key in client.scan_iter(f"{KEY_PREFIX}seg:*")),
             "tags_applied": int(client.hexists(f"{KEY_PREFIX}tags:applied", customer_id))}
    for name in STREAMS:
        found[name] = sum(1 for _, fields in client.xrange(f"{KEY_PREFIX}{name}")
                          if fields.get("customer_id") == customer_id)
    return found


def _purchase(customer_id: str, event_id: str, consent: dict | None = None) -> dict:
    """A purchase stamped now (consent counts only in events after the erasure)."""
    event = {"type": "purchase", "event_id": event_id, "customer_id": customer_id, "order_id": event_id,
             "total": "30.00", "event_time": datetime.now(UTC).isoformat()}
    return {**event, "consent": consent} if consent else event


def _send(isolated: Isolated, events: list[dict]) -> None:
    records = [(e["customer_id"].encode(), json.dumps(e).encode()) for e in events]
    asyncio.run(produce(isolated.settings.kafka, isolated.settings.topic("events"), records))


def _erased_letters(settings: Settings) -> list[dict]:
    letters = asyncio.run(read_topic(settings.kafka, settings.topic("events.dlq"), 1_000, 3))
    return [letter for letter in letters if letter["reason"] == "erased"]


def _delete_through_the_api(env: dict[str, str], customer_id: str) -> None:
    """``DELETE /v1/customers/{id}`` on a real ``pulse serve``, then its receipt from the API."""
    port, token = free_port(), env["PULSE_API_TOKENS"]
    server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        wait_for(lambda: _http(f"{base}/v1/health")[0] == 200, 30, "pulse serve answering")
        status, answer = _http(f"{base}/v1/customers/{customer_id}", auth, "DELETE")
        assert status == 202, answer
        wait_for(lambda: _http(base + answer["receipt"], auth)[0] == 200, 60, "the receipt from the API")
    finally:
        server.terminate()
        server.wait(timeout=20)


def _http(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}, method=method),
                                    timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError:
        return 0, {}


def test_forget_erases_everywhere_within_a_minute_and_suppresses_later_events(isolated: Isolated) -> None:
    settings = isolated.settings
    env = {**os.environ, **isolated.env}
    events, path = sample_file(isolated, 120, 2400, seed=31, prefix="f")
    expected = batch_raw_rfm(events)
    buyers = sorted(cid for cid, v in expected.items() if v.orders)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    second_port = free_port()
    workers = [WorkerProcess(worker_env(env), isolated.data_dir / "w1.log", settings.web_port).start(),
               WorkerProcess(worker_env({**env, "PULSE_WEB_PORT": str(second_port)}), isolated.data_dir / "w2.log",
                             second_port).start()]
    try:
        run_pulse(env, "replay", str(path), "--wait", "--timeout", "600")
        caught_up(settings)
        # the customer with the most entries in the streams, and one to come back with consent
        victim = max(buyers, key=lambda cid: sum(_mentions(client, cid).values()))
        returning, withdrawing = [cid for cid in buyers if cid != victim][:2]
        before = _mentions(client, victim)
        assert before["hash"] == 1 and before["segment_sets"] == 1 and before["tags"] > 0, before
        others = {cid: {k: client.hget(customer_key(cid), k) for k in KEPT} for cid in buyers
                  if cid not in (victim, returning, withdrawing)}
        # a customer's whole state on the worker views: only with a token, on either worker
        # (the one not holding the customer asks the one that does), for 20 customers
        assert all((w.get(f"/customers/{cid}/") or {}).get("customer_id") == cid
                   for cid in sorted(others)[:20] for w in workers)
        some = next(iter(others))
        for w in workers:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}/customers/{some}/", timeout=5)
            assert refused.value.code == 401

        started = time.monotonic()
        done = run_pulse(env, "forget", victim, "--timeout", "60")
        elapsed = time.monotonic() - started
        receipt = json.loads(done.stdout)
        assert elapsed < 60, elapsed

        # Redis: nothing left
        assert _mentions(client, victim) == dict.fromkeys(before, 0)
        # the receipt: every store, with times; what stays until retention, with dates
        stores = {row["store"]: row for row in receipt["stores"]}
        assert stores[f"redis hash {customer_key('{id}')}"]["removed"] == 1
        assert stores[f"redis stream {KEY_PREFIX}tags"]["removed"] == before["tags"]
        assert any(name.startswith("changelog ") and row["action"] == "tombstone written"
                   for name, row in stores.items())
        assert all(datetime.fromisoformat(row["cleared_at"]) for row in receipt["stores"])
        retained = {row["topic"]: row for row in receipt["remains_until_retention"]}
        assert retained[settings.topic("events")]["gone_by"].startswith(str(datetime.now(UTC).year))
        assert victim not in json.dumps(receipt)  # the receipt names a digest, not the id
        published = asyncio.run(read_topic(settings.kafka, settings.topic("privacy"), 1, 30))
        assert [r["request_id"] for r in published] == [receipt["request_id"]]

        # the state changelog's newest record of the customer is a tombstone
        every = list(range(settings.partitions))
        from aiokafka.partitioner import DefaultPartitioner
        owner = int(DefaultPartitioner()(victim.encode(), every, every))
        history = asyncio.run(read_keyed(settings.kafka, changelog_topic(settings, "customer-state"),
                                         json.dumps(victim).encode(), [owner]))
        assert history and history[-1] == b"", "the newest changelog record of the customer is a tombstone"

        # the population excludes them, on both workers
        wait_for(lambda: all(w.get("/rfm/")["population"] == len(buyers) - 1 for w in workers), 60,
                 "both workers' population without the erased customer")

        # later events: suppressed, dead-lettered without payload; fresh consent lets one back in
        _send(isolated, [_purchase(victim, f"{isolated.tag}-after-1"),
                         _purchase(returning, f"{isolated.tag}-before-consent")])
        _delete_through_the_api(env, returning)
        _send(isolated, [_purchase(returning, f"{isolated.tag}-consent", {"analytics": True})])
        # withdrawn analytics consent erases like `pulse forget`, with a receipt
        withdrawal = f"{isolated.tag}-withdraw"
        _send(isolated, [_purchase(withdrawing, withdrawal, {"analytics": False})])
        wait_for(lambda: client.exists(receipt_key(f"consent-{withdrawal}")), 60, "the consent withdrawal's receipt")
        assert not any(_mentions(client, withdrawing).values())
        wait_for(lambda: client.exists(customer_key(returning)), 60, "the customer back with fresh consent")
        wait_for(lambda: len(_erased_letters(settings)) == 1, 60, "the erased customer's event dead-lettered")
        assert _erased_letters(settings)[0]["original_b64"] == ""
        assert _mentions(client, victim)["hash"] == 0
        assert others == {cid: {k: client.hget(customer_key(cid), k) for k in KEPT} for cid in others}
        caught_up(settings)  # the control records and the lone events after them are committed
    finally:
        for worker in workers:
            worker.stop()

    # Restart from the changelogs alone: the erased customer stays gone, the one who came
    # back with consent (a tombstoned key set again) is restored, and suppression holds.
    for directory in isolated.data_dir.glob("worker-*"):
        shutil.rmtree(directory)
    # An event of the erased customer waits in the topic: the restored suppression must hold
    # for the first records after the restart; another follows once the worker is ready.
    _send(isolated, [_purchase(victim, f"{isolated.tag}-after-restart")])
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w3.log", settings.web_port).start()
    try:
        wait_for(lambda: (w := worker.get("/health/")) is not None and not w["rebalancing"], 120,
                 "the restarted worker holding every partition", isolated.data_dir / "w3.log")
        _send(isolated, [_purchase(victim, f"{isolated.tag}-after-ready")])
        kept = next(cid for cid in others)

        def restored() -> bool:
            try:
                return worker.get(f"/customers/{kept}/") is not None
            except urllib.error.HTTPError as exc:
                if exc.code == 503:  # while the tables recover
                    return False
                raise

        wait_for(restored, 120, "the tables restored from the changelogs", isolated.data_dir / "w3.log")
        assert worker.get(f"/customers/{victim}/") is None
        assert worker.get(f"/customers/{returning}/")["orders"] == 1
        wait_for(lambda: len(_erased_letters(settings)) == 3, 120, "the events after the restart suppressed",
                 isolated.data_dir / "w3.log")
        caught_up(settings)  # and committed: nothing left to redo
        assert _mentions(client, victim)["hash"] == 0
        access = json.loads(run_pulse(env, "access", victim).stdout)
        assert access["state"] is None and access["profile"] is None and not access["tag_changes"]
    finally:
        worker.stop()
