"""The daily activity drift monitor on generated populations: almost nothing on a stationary
year, and a halved conversion or checkout seen within three days of event time; the dead-letter
rate, normally zero, quiet without dead letters and loud on a burst."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from stream.core.activity import event_counts
from stream.io.generate import Incident, PopulationSpec, generate
from stream.model import Monitoring
from stream.model.activity_drift import ActivityMonitor

START = datetime(2024, 7, 1, tzinfo=UTC)


def _records(spec: PopulationSpec) -> list[Monitoring]:
    events, _ = generate(spec)
    monitor, sessions, records, active, carted = ActivityMonitor(), {}, [], set(), set()
    for event in events:
        at = datetime.fromisoformat(event["event_time"])
        customer_day = (event["customer_id"], at.date())
        new_day = customer_day not in active
        active.add(customer_day)
        session = event.get("session_id")
        new_session = session is not None and sessions.get(event["customer_id"]) != session
        if session is not None:
            sessions[event["customer_id"]] = session
        new_cart = event["type"] == "add_to_cart" and (event["customer_id"], session) not in carted
        if new_cart:
            carted.add((event["customer_id"], session))
        cents = round(float(event["total"]) * 100) if event["type"] == "purchase" else 0
        monitor.observe(int(at.timestamp() // 86_400), event_counts(
            event["type"], new_session, cents, event.get("kind") == "complaint", new_day, new_cart))
        records += monitor.advance(at)
    return records


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stationary_year_raises_at_most_three_records(seed: int) -> None:
    records = _records(PopulationSpec(customers=1000, days=365, seasonal_share=0, seed=seed))
    assert len(records) <= 3, [r.details for r in records]


def test_a_halved_conversion_is_recorded_within_three_days_of_its_start() -> None:
    incident = Incident("conversion", 0.5, START, 14)
    records = _records(PopulationSpec(customers=1000, days=365, seasonal_share=0, seed=1, incident=incident))
    conversion = [r for r in records if r.details["signal"] == "conversion"]
    first = conversion[0]
    assert first.details["direction"] == "down" and first.details["since"] == "2024-07-01"
    assert first.at <= START + timedelta(days=3)
    assert -0.75 < first.details["change"] < -0.3 and first.details["over_what"] == "sessions"
    assert first.details["over"] > 100
    # purchases per active customer fall with it, as soon
    rate = [r for r in records if r.details["signal"] == "purchase_rate"][0]
    assert rate.details["direction"] == "down" and rate.at <= START + timedelta(days=3), rate.details
    assert rate.details["over_what"] == "active_customers"
    # the end of the incident is a change back, reported as such, and nothing else moved
    assert {(r.details["signal"], r.details["direction"]) for r in records} <= {
        (signal, direction) for signal in ("conversion", "checkout_completion", "cart_checkout", "purchase_rate")
        for direction in ("down", "up")}


def test_a_halved_checkout_is_recorded_in_the_funnel_within_three_days_of_its_start() -> None:
    incident = Incident("checkout", 0.5, START, 14)
    records = _records(PopulationSpec(customers=1000, days=365, seasonal_share=0, seed=1, incident=incident))
    first = [r for r in records if r.details["signal"] == "cart_checkout"][0]
    assert first.details["direction"] == "down" and first.details["since"] == "2024-07-01", first.details
    assert first.at <= START + timedelta(days=3)
    assert -0.75 < first.details["change"] < -0.3 and first.details["over_what"] == "carts"
    # of those who reached checkout, as many bought as before
    assert not [r for r in records if r.details["signal"] == "checkout_completion"
                and r.at < START + timedelta(days=14)]


def _dead_letter_days(monitor: ActivityMonitor, rates: list[float], records: int = 3000) -> list[Monitoring]:
    found, day = [], int(START.timestamp() // 86_400)
    for offset, rate in enumerate(rates):
        monitor.observe(day + offset, {"records": float(records), "dead_letters": float(round(rate * records))})
        found += monitor.advance(START + timedelta(days=offset + 4))  # past the lateness
    return found


def test_a_burst_of_dead_letters_is_recorded_and_a_clean_stream_never() -> None:
    clean = ActivityMonitor()
    assert _dead_letter_days(clean, [0.0] * 365) == []
    assert clean.detectors["dead_letter_rate"].mean == 0.0  # it had a baseline: zero
    # a steady trickle (one in a thousand, Poisson) is normal too
    trickle = ActivityMonitor()
    rng = random.Random(4)
    assert _dead_letter_days(trickle, [_poisson(rng, 3.0) / 3000 for _ in range(365)]) == []

    burst = ActivityMonitor()
    records = _dead_letter_days(burst, [0.0] * 60 + [0.02] * 3 + [0.0] * 30)
    # the burst, then its end (a change back, as for every signal)
    assert [(r.details["signal"], r.details["direction"]) for r in records] == [
        ("dead_letter_rate", "up"), ("dead_letter_rate", "down")], [r.details for r in records]
    first = records[0]
    assert first.details["since"] == (START + timedelta(days=60)).date().isoformat(), first.details
    assert first.at <= START + timedelta(days=63) and first.details["over_what"] == "records"
    assert first.details["recent"] > 0.01


def _poisson(rng: random.Random, mean: float) -> int:
    count, threshold, product = 0, math.exp(-mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def test_counts_for_a_closed_day_are_ignored_and_rates_need_a_baseline_first() -> None:
    monitor = ActivityMonitor(warmup_days=2)
    day = int(START.timestamp() // 86_400)
    for offset in range(6):
        monitor.observe(day + offset, {"sessions": 100.0, "purchases": 25.0})
        assert monitor.advance(START + timedelta(days=offset, hours=12)) == []
    closed = day  # closed once events 3 days (the lateness) past its end were seen
    monitor.observe(closed, {"sessions": 1000.0, "purchases": 0.0})
    assert closed not in monitor.open_days
    assert monitor.detectors["conversion"].mean == pytest.approx(0.25)


def test_a_monitor_pickled_before_floors_and_pool_days_restores_and_runs() -> None:
    """The trainer's snapshot pickles its label monitor: one of the previous version lacks them."""
    old = ActivityMonitor()
    _dead_letter_days(old, [0.0] * 20)
    state = pickle.loads(pickle.dumps(old)).__dict__
    del state["floors"]
    for cusum in state["detectors"].values():
        del cusum.__dict__["block_days"]
    restored = pickle.loads(pickle.dumps(old))
    restored.__dict__.clear()
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    assert restored.floors == {"dead_letter_rate": 0.005}
    records = _dead_letter_days(restored, [0.0] * 40 + [0.03] * 3)
    assert [r.details["signal"] for r in records] == ["dead_letter_rate"]
