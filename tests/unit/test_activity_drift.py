"""The daily activity drift monitor on generated populations: almost nothing on a stationary
year, and a halved conversion seen within three days of event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream.core.activity import event_counts
from stream.io.generate import Incident, PopulationSpec, generate
from stream.model import Monitoring
from stream.model.activity_drift import ActivityMonitor

START = datetime(2024, 7, 1, tzinfo=UTC)


def _records(spec: PopulationSpec) -> list[Monitoring]:
    events, _ = generate(spec)
    monitor, sessions, records, active = ActivityMonitor(), {}, [], set()
    for event in events:
        at = datetime.fromisoformat(event["event_time"])
        customer_day = (event["customer_id"], at.date())
        new_day = customer_day not in active
        active.add(customer_day)
        session = event.get("session_id")
        new_session = session is not None and sessions.get(event["customer_id"]) != session
        if session is not None:
            sessions[event["customer_id"]] = session
        cents = round(float(event["total"]) * 100) if event["type"] == "purchase" else 0
        monitor.observe(int(at.timestamp() // 86_400),
                        event_counts(event["type"], new_session, cents, event.get("kind") == "complaint", new_day))
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
        (signal, direction) for signal in ("conversion", "checkout_completion", "purchase_rate")
        for direction in ("down", "up")}


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
