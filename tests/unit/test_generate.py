"""The synthetic population: valid events, a hidden churn process that really happens,
heterogeneous customers, and funnels in the right order."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from stream.core.validate import Rejection, validate
from stream.io.generate import PopulationSpec, generate

SPEC = PopulationSpec(customers=400, days=365, seed=7)


@pytest.fixture(scope="module")
def population() -> tuple[list[dict], list]:
    return generate(SPEC)


def _time(event: dict) -> datetime:
    return datetime.fromisoformat(event["event_time"])


def test_same_seed_same_population_other_seed_another() -> None:
    small = PopulationSpec(customers=30, days=60, seed=3)
    assert generate(small) == generate(small)
    assert generate(small)[0] != generate(PopulationSpec(customers=30, days=60, seed=4))[0]


def test_every_event_passes_validation_and_ids_are_unique(population: tuple[list[dict], list]) -> None:
    events, _ = population
    later = datetime(2100, 1, 1, tzinfo=UTC)
    rejected = [r for r in (validate(json.dumps(e).encode(), now=later) for e in events)
                if isinstance(r, Rejection)]
    assert rejected == []
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(_time(a) <= _time(b) for a, b in zip(events, events[1:], strict=False))


def test_browsing_before_login_is_valid_and_keyed_by_its_owner(population: tuple[list[dict], list]) -> None:
    from stream.io.anonymize import browse_before_login
    from stream.io.produce import event_key

    planted, chosen = browse_before_login(population[0], share=0.5, seed=7)
    later = datetime(2100, 1, 1, tzinfo=UTC)
    assert [r for r in (validate(json.dumps(e).encode(), now=later) for e in planted) if isinstance(r, Rejection)] == []
    assert len({e["event_id"] for e in planted}) == len(planted) == len(population[0]) + chosen
    assert all(_time(a) <= _time(b) for a, b in zip(planted, planted[1:], strict=False))
    logins = {e["anonymous_id"]: e for e in planted if e["type"] == "identify"}
    assert len(logins) == chosen and 150 <= chosen <= 250
    for event in planted:
        if "customer_id" not in event:  # before its login, on the device the login names, keyed by it
            assert _time(event) < _time(logins[event["anonymous_id"]])
            assert event_key(event) == event["anonymous_id"].encode()
    assert all(event_key(login) == login["anonymous_id"].encode() for login in logins.values())


def test_churners_stop_and_fade_first(population: tuple[list[dict], list]) -> None:
    events, truth = population
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_customer[event["customer_id"]].append(event)
    churners = [t for t in truth if t.churns]
    assert 0.2 * SPEC.customers < len(churners) < 0.4 * SPEC.customers
    before = during = 0
    for t in churners:
        churn_at = datetime.fromisoformat(t.churn_at)
        decay = datetime.fromisoformat(t.decay_starts_at)
        mine = by_customer[t.customer_id]
        # Nothing after the churn date (refunds of earlier orders excepted).
        assert all(_time(e) < churn_at for e in mine if e["type"] != "refund"), t.customer_id
        window = churn_at - decay
        before += sum(1 for e in mine if decay - window <= _time(e) < decay)
        during += sum(1 for e in mine if decay <= _time(e) < churn_at)
    # A linear decay to zero halves the expected activity; allow sampling noise.
    assert during < 0.75 * before


def test_a_steady_population_arrives_evenly_and_leaves_at_a_constant_hazard() -> None:
    spec = PopulationSpec(customers=2000, days=365, seed=5, churn_share=0.3, seasonal_share=0, steady=True)
    events, truth = generate(spec)
    quarters = Counter(min(3, int((datetime.fromisoformat(t.signup_at) - spec.start).days // 91.25)) for t in truth)
    assert all(abs(quarters[q] - 500) < 80 for q in range(4)), quarters
    # a constant hazard: 30% within a year of signing up, so within the days each had left
    expected = sum(1 - 0.7 ** ((spec.start + timedelta(days=365) - datetime.fromisoformat(t.signup_at)).days / 365)
                   for t in truth)
    churned = [t for t in truth if t.churns]
    assert abs(len(churned) - expected) < 4 * expected ** 0.5, (len(churned), expected)
    lifetimes = [(datetime.fromisoformat(t.churn_at) - datetime.fromisoformat(t.signup_at)).days for t in churned]
    assert min(lifetimes) < 30  # no minimum age before leaving, unlike the default population
    assert all(t.decay_starts_at is not None and t.decay_starts_at >= t.signup_at for t in churned)
    assert all(_time(e) >= datetime.fromisoformat(t.signup_at)
               for t in truth[:50] for e in events if e["customer_id"] == t.customer_id)


def test_nobody_acts_before_signing_up(population: tuple[list[dict], list]) -> None:
    events, truth = population
    signup = {t.customer_id: datetime.fromisoformat(t.signup_at) for t in truth}
    assert all(_time(e) >= signup[e["customer_id"]] for e in events)


def test_customers_are_heterogeneous(population: tuple[list[dict], list]) -> None:
    events, truth = population
    orders = Counter(e["customer_id"] for e in events if e["type"] == "purchase")
    counts = [orders.get(t.customer_id, 0) for t in truth]
    assert statistics.pstdev(counts) / statistics.mean(counts) > 0.8  # a heavy tail, not a uniform crowd
    assert sum(1 for c in counts if c == 0) > 0


def test_funnels_run_in_order_within_a_session(population: tuple[list[dict], list]) -> None:
    events, _ = population
    sessions: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if "session_id" in event:
            sessions[event["session_id"]].append(event["type"])
    purchases = 0
    for kinds in sessions.values():
        if "purchase" in kinds:
            purchases += 1
            i = kinds.index("purchase")
            assert "checkout_start" in kinds[:i] and "add_to_cart" in kinds[:i]
        assert kinds[0] == "page_view"
    browsing_only = sum(1 for kinds in sessions.values() if "purchase" not in kinds)
    assert browsing_only > 2 * purchases  # most sessions drop off before buying


def test_complaints_concentrate_before_churn(population: tuple[list[dict], list]) -> None:
    events, truth = population
    windows = {t.customer_id: (datetime.fromisoformat(t.decay_starts_at), datetime.fromisoformat(t.churn_at))
               for t in truth if t.churns}
    in_window = out_window = 0
    for event in events:
        if event["type"] == "support_contact" and event["kind"] == "complaint":
            window = windows.get(event["customer_id"])
            if window and window[0] <= _time(event) < window[1]:
                in_window += 1
            else:
                out_window += 1
    decay_days = sum((w[1] - w[0]) / timedelta(days=1) for w in windows.values())
    total_days = SPEC.customers * SPEC.days
    # complaints per customer-day are several times higher in the decay window
    assert in_window / decay_days > 3 * out_window / total_days
