"""Identity stitching end to end, on a real worker: visitors browse anonymously on one or two
devices, log in, buy, and browse on after the login; a shared kiosk is linked to more customers
than the limit; broken tagging sends placeholder ids. Each customer's hash counts their events
and their devices' once (also after the whole log is replayed a second time), the link beyond
the limit and the placeholders are dead-lettered with their reason, and ``pulse unlink`` takes a
device's activity back out; a subject access export shows the aliases, and erasing a customer
erases them."""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from stream.core.batch import batch_stitched
from stream.core.identity import PLACEHOLDER_IDS
from stream.infra.worker import WorkerProcess, worker_env
from stream.sinks.erasure import receipt_key
from stream.sinks.redis import customer_key
from tests.helpers import read_topic, run_pulse
from tests.integration.conftest import Isolated, wait_for

pytestmark = pytest.mark.integration

LINK_LIMIT = 2


def _journeys(tag: str, customers: int, seed: int) -> list[dict[str, Any]]:
    """Time-ordered events of ``customers`` visitors, every fifth with a second device, a kiosk
    three customers log in on, and placeholder ids."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=20)
    events: list[dict[str, Any]] = []
    number = 0

    def add(at: datetime, kind: str, **ids: str) -> None:
        nonlocal number
        number += 1
        event: dict[str, Any] = {"type": kind, "event_id": f"{tag}-e{number}", "event_time": at.isoformat(), **ids}
        if kind == "purchase":
            event.update(order_id=f"{tag}-o{number}", total=f"{rng.randint(5, 80)}.00")
        elif kind != "identify":
            event.update(session_id=f"{tag}-s{number // 6}", channel=rng.choice(["web", "app"]))
            if kind == "search":
                event["query"] = rng.choice(["boots", "jazz", "lamp"])
            elif kind == "product_view":
                event.update(sku=f"sku-{rng.randint(1, 40)}", category=rng.choice(["books", "music", "toys"]))
        events.append(event)

    for i in range(customers):
        customer = f"{tag}-c{i}"
        devices = [f"{tag}-d{i}"] + ([f"{tag}-d{i}b"] if i % 5 == 0 else [])
        at = start + timedelta(hours=i * 7)
        for device in devices:
            for _ in range(rng.randint(2, 5)):
                at += timedelta(minutes=rng.randint(1, 9))
                add(at, rng.choice(["page_view", "product_view", "search"]), anonymous_id=device)
            at += timedelta(minutes=1)
            add(at, "identify", anonymous_id=device, customer_id=customer)
            for _ in range(rng.randint(0, 2)):
                at += timedelta(minutes=rng.randint(1, 9))
                add(at, "purchase", customer_id=customer)
            for _ in range(rng.randint(1, 3)):  # the device goes on browsing after the login
                at += timedelta(hours=rng.randint(1, 30))
                add(at, "page_view", anonymous_id=device)
    kiosk, at = f"{tag}-kiosk", start + timedelta(days=19)
    add(at, "page_view", anonymous_id=kiosk)
    for i in range(LINK_LIMIT + 1):  # the last link is one too many
        add(at + timedelta(minutes=i + 1), "identify", anonymous_id=kiosk, customer_id=f"{tag}-c{i}")
    add(at + timedelta(minutes=9), "identify", anonymous_id="undefined", customer_id=f"{tag}-c1")
    add(at + timedelta(minutes=9), "page_view", anonymous_id="null")
    return sorted(events, key=lambda e: e["event_time"])


def _hashes(client: redis.Redis, customers: list[str]) -> dict[str, tuple[int, list[str]]]:
    found = {}
    for customer in customers:
        fields = client.hmget(customer_key(customer), ["events", "aliases"])
        found[customer] = (int(fields[0] or 0), sorted((fields[1] or "").split(",")) if fields[1] else [])
    return found


def test_anonymous_activity_is_stitched_once_the_limit_holds_and_unlink_undoes_it(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env, "PULSE_IDENTITY_LINK_LIMIT": str(LINK_LIMIT)}
    events = _journeys(f"i{isolated.tag}", customers=30, seed=5)
    path = isolated.data_dir / "journeys.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    expected = batch_stitched(events, LINK_LIMIT, PLACEHOLDER_IDS)
    customers = sorted(expected)
    want = {c: (s.events, sorted(s.aliases or [])) for c, s in expected.items()}
    client = redis.Redis.from_url(isolated.settings.redis_url, decode_responses=True)

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    try:
        printed = run_pulse(env, "replay", str(path), "--wait", "--timeout", "600").stdout
        assert "anonymous ids" in printed, printed
        first = _hashes(client, customers)
        if first != want:
            letters = asyncio.run(read_topic(isolated.settings.kafka, isolated.settings.topic("events.dlq"), 100, 5))
            counters = run_pulse(env, "status", check=False).stdout
            wrong = {c: (got, want[c]) for c, got in first.items() if got != want[c]}
            raise AssertionError(f"{wrong}\ndead letters: {[(x['reason'], x['message']) for x in letters]}\n"
                                 f"{counters}")

        run_pulse(env, "replay", str(path), "--wait", "--timeout", "600")  # every record again
        assert _hashes(client, customers) == want

        letters = asyncio.run(read_topic(isolated.settings.kafka, isolated.settings.topic("events.dlq"), 6, 20))
        reasons = sorted(letter["reason"] for letter in letters)
        # each bad record twice (both replays): a redelivered refusal is refused again
        assert reasons == ["merge_storm"] * 2 + ["placeholder_id"] * 4, reasons

        # a device of a customer with two: its activity goes back out, the other's stays
        customer, device = f"i{isolated.tag}-c5", f"i{isolated.tag}-d5b"
        device_events = sum(1 for e in events if e.get("anonymous_id") == device and e["type"] != "identify")
        unlinked = run_pulse(env, "unlink", device).stdout
        assert "unlinked" in unlinked
        events_after, aliases_after = _hashes(client, [customer])[customer]
        assert events_after == want[customer][0] - device_events
        assert aliases_after == [f"i{isolated.tag}-d5"]
        others = {c: v for c, v in _hashes(client, customers).items() if c != customer}
        assert others == {c: v for c, v in want.items() if c != customer}

        # a subject access export names the aliases and holds their own activity
        document = json.loads(run_pulse(env, "access", customer).stdout)
        assert document["state"]["aliases"] == [f"i{isolated.tag}-d5"]
        assert set(document["identities"]) == {f"i{isolated.tag}-d5"}
        assert document["identities"][f"i{isolated.tag}-d5"]["linked_to"] == customer

        # erasing a customer erases their aliases too, each with its own receipt
        erased, alias = f"i{isolated.tag}-c7", f"i{isolated.tag}-d7"
        receipt = json.loads(run_pulse(env, "forget", erased).stdout)
        alias_receipt = receipt_key(f"{receipt['request_id']}.alias-1")
        wait_for(lambda: client.exists(alias_receipt) == 1, 60, "the alias's erasure receipt")
        assert json.loads(run_pulse(env, "access", alias).stdout)["identities"] == {}
        assert client.exists(customer_key(erased)) == 0
    finally:
        worker.stop()
    print(f"\n{len(customers)} customers, {sum(len(s.aliases or []) for s in expected.values())} links: every "
          f"hash equals the batch stitching, before and after a second replay; unlink took {device_events} "
          f"events back out of {customer}")
