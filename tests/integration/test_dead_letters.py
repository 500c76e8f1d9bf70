"""Bad input against the real broker: every malformed record lands in the DLQ with the right
reason, the valid ones around them are all processed, the worker stays up, and
records in = accepted + rejected, accepted = applied + duplicates + too late, exactly."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from stream.infra.worker import WorkerProcess, worker_env
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.sinks.redis import customer_key
from tests.helpers import read_topic
from tests.integration.conftest import Isolated, caught_up, wait_for

pytestmark = pytest.mark.integration


def _purchase(**changes: object) -> bytes:
    event = {"type": "purchase", "event_id": "bad-1", "customer_id": "bad-c",
             "event_time": "2024-01-01T00:00:00+00:00", "order_id": "o", "total": "10.00"}
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


FUTURE = (datetime.now(UTC) + timedelta(days=30)).isoformat()
BAD: list[tuple[str, bytes, str]] = [
    ("truncated JSON", b'{"type": "purchase", "event_id": ', "not_json"),
    ("non-UTF-8 bytes", b"\xff\xfe\xfa\x00", "not_utf8"),
    ("empty value", b"", "empty"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "not_json"),
    ("multi-megabyte payload", b'{"type": "page_view", "pad": "' + b"x" * 3_000_000 + b'"}', "too_large"),
    ("a JSON array", b"[1, 2, 3]", "invalid_field"),
    ("unknown type", _purchase(type="teleport"), "unknown_type"),
    ("no type", _purchase(type=...), "missing_field"),
    ("missing customer id", _purchase(customer_id=...), "missing_field"),
    ("missing event id", _purchase(event_id=...), "missing_field"),
    ("empty customer id", _purchase(customer_id="   "), "invalid_field"),
    ("customer id too long", _purchase(customer_id="c" * 1000), "invalid_field"),
    ("total of the wrong type", _purchase(total={"amount": 1}), "invalid_field"),
    ("NaN total", _purchase(total="NaN"), "invalid_field"),
    ("infinite total", _purchase(total="Infinity"), "invalid_field"),
    ("negative total", _purchase(total="-3.50"), "invalid_field"),
    ("negative unit price", _purchase(items=[{"sku": "s", "quantity": 1, "unit_price": "-1"}]),
     "invalid_field"),
    ("quantity as text", _purchase(items=[{"sku": "s", "quantity": "two", "unit_price": "5"}]),
     "invalid_field"),
    ("zero quantity", _purchase(items=[{"sku": "s", "quantity": 0, "unit_price": "5"}]), "invalid_field"),
    ("time without a timezone", _purchase(event_time="2024-01-01T00:00:00"), "invalid_field"),
    ("not a date", _purchase(event_time="yesterday"), "invalid_field"),
    ("event time a month ahead", _purchase(event_time=FUTURE), "future_event_time"),
    ("total inconsistent with lines", _purchase(items=[{"sku": "s", "quantity": 2, "unit_price": "2.00"}]),
     "inconsistent_total"),
    ("unknown channel", _purchase(channel="carrier-pigeon"), "invalid_field"),
    ("unexpected field", _purchase(coupon_hack=True), "unknown_field"),
    ("bad currency", _purchase(currency="dollars"), "invalid_field"),
]


def test_bad_input_is_dead_lettered_and_every_record_is_accounted_for(isolated: Isolated) -> None:
    assert len({reason for _, _, reason in BAD}) >= 10 and len(BAD) >= 20
    settings = isolated.settings
    events = sample_events(6, 80, seed=3, prefix=f"q{isolated.tag}")
    late_customer = events[-1]["customer_id"]
    newest = max(e["event_time"] for e in events if e["customer_id"] == late_customer)
    too_late = {**events[-1], "event_id": f"late-{isolated.tag}",
                "event_time": (datetime.fromisoformat(newest) - timedelta(days=10)).isoformat(),
                "type": "page_view"}
    too_late = {k: v for k, v in too_late.items() if k in
                ("event_id", "customer_id", "event_time", "type", "channel")}
    duplicates = events[10:15]
    records = event_records(events + duplicates)
    for i, (_, raw, _) in enumerate(BAD):
        records.insert(i * 3 + 1, (f"bad-{i}".encode(), raw))
    records += event_records([too_late])

    worker = WorkerProcess(worker_env(isolated.env), isolated.data_dir / "w.log", settings.web_port).start()
    try:
        asyncio.run(produce(settings.kafka, settings.topic("events"), records))
        letters = asyncio.run(read_topic(settings.kafka, settings.topic("events.dlq"),
                                          len(BAD) + 1, 120))

        by_key = {base64.b64decode(letter["original_key_b64"]): letter for letter in letters}
        for i, (kind, raw, reason) in enumerate(BAD):
            letter = by_key.get(f"bad-{i}".encode())
            assert letter is not None, f"{kind}: no dead letter"
            assert letter["reason"] == reason, f"{kind}: {letter['reason']} ({letter['message']})"
            assert letter["stage"] == "validate"
            assert letter["original_size"] == len(raw)
            stored = base64.b64decode(letter["original_b64"])
            assert stored == raw[: len(stored)] and (letter["truncated"] == (len(stored) < len(raw)))
        late_letters = [x for x in letters if x["reason"] == "too_late"]
        assert len(late_letters) == 1 and late_letters[0]["stage"] == "profile"
        assert len(letters) == len(BAD) + 1

        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        want = Counter(e["customer_id"] for e in events)
        wait_for(lambda: {c: int(client.hget(customer_key(c), "events") or 0) for c in want} == dict(want), 90,
                 "every accepted event in Redis")

        caught_up(settings)
        counters = worker.get("/counters/")
        rejected = sum(v for k, v in counters.items() if k.startswith("ingest.rejected."))
        assert counters["ingest.received"] == len(records)
        assert counters["ingest.received"] == counters["ingest.accepted"] + rejected
        assert rejected == len(BAD)
        assert counters["ingest.accepted"] == (counters["profile.applied"] + counters["profile.duplicate"]
                                               + counters["profile.too_late"])
        assert counters["profile.duplicate"] == len(duplicates)
        assert counters["profile.too_late"] == 1
        assert counters["profile.applied"] == len(events)
        assert Counter({k.removeprefix("ingest.rejected."): v for k, v in counters.items()
                        if k.startswith("ingest.rejected.")}) == Counter(r for _, _, r in BAD)
        _assert_metrics_reconcile(settings.web_port, counters, len(records))
        assert worker.proc is not None and worker.proc.poll() is None, "the worker must stay up"
        assert _listening_addresses(settings.web_port) == {"127.0.0.1"}  # PULSE_WEB_BIND's default
        health = worker.get("/health/")
        assert (health["status"], health["app_id"]) == ("ok", settings.app_id)
        assert health["partitions"] == list(range(settings.partitions))  # the only worker owns all
    finally:
        worker.stop()


def _assert_metrics_reconcile(port: int, counters: dict[str, int], records: int) -> None:
    """/metrics parses as Prometheus text and its counters reconcile: every record in is
    accepted or rejected, every accepted event is applied, a duplicate or too late. Its
    consumer lag covers every group and partition and reaches zero: sweep ticks keep
    producing to the events topic, so a single scrape may catch a tick not yet processed."""
    scrapes: list[dict[tuple[str, str], float]] = []

    def caught_up_in_metrics() -> bool:
        scrapes.append(_scrape_reconciled(port, counters, records))
        return bool(scrapes[-1]) and not any(scrapes[-1].values())

    try:
        wait_for(caught_up_in_metrics, 30, "pulse_consumer_lag at zero for every group and partition")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last scrape's lags: {scrapes[-1]}") from None


def _scrape_reconciled(port: int, counters: dict[str, int], records: int) -> dict[tuple[str, str], float]:
    """One scrape: its counters reconcile (asserted); returns its consumer lags."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    totals: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    lags: dict[tuple[str, str], float] = {}
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            if sample.name == "pulse_events_rejected_total":
                rejected[sample.labels["reason"]] += int(sample.value)
            elif sample.name.startswith("pulse_events_") and sample.name.endswith("_total"):
                totals[sample.name.removeprefix("pulse_events_").removesuffix("_total")] += int(sample.value)
            elif sample.name == "pulse_consumer_lag":
                lags[sample.labels["group"], f"{sample.labels['topic']}[{sample.labels['partition']}]"] = sample.value
            elif sample.name == "pulse_batch_seconds_count":
                assert sample.value > 0
    assert "pulse_event_loop_stall_seconds_count" in names  # the worker watches its event loop
    assert totals["received"] == records == totals["accepted"] + sum(rejected.values())
    assert totals["accepted"] == totals["applied"] + totals["duplicate"] + totals["late"]
    assert rejected == Counter({k.removeprefix("ingest.rejected."): v for k, v in counters.items()
                                if k.startswith("ingest.rejected.")})
    return lags


def _listening_addresses(port: int) -> set[str]:
    """The local IPv4 addresses of sockets listening on ``port`` (Linux /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as table:
        lines = table.read().splitlines()[1:]
    for line in lines:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found
