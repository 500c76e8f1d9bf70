"""The per-customer state stays inside its byte budget however many events a customer has."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from schemas import CustomerState, Purchase, parse_event
from stream.core.affinity import MAX_BASKETS, MAX_CATEGORIES, cross_sell
from stream.core.alerts import assess
from stream.core.churn import ChurnConfig
from stream.core.dedup import DEFAULT_POLICY
from stream.core.fold import apply_event
from stream.core.rfm import Cuts
from stream.core.rules import load_rules
from stream.core.tagging import compute_tags, next_boundary
from stream.core.windows import window

# serialised JSON, as stored in the table and its changelog (6 KiB until the hour-of-day counts and
# the current session's event count took the worst case to 6,156 bytes)
STATE_BYTE_BUDGET = 6_656


def _events(n: int, seed: int = 1):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    clock = datetime(2022, 1, 1, tzinfo=UTC)
    categories = [f"category-{i}" for i in range(25)]
    for i in range(n):
        clock += timedelta(minutes=rng.randint(1, 150))
        base = {"event_id": f"upstream-system-{seed}-{i:012d}-{rng.getrandbits(64):016x}",
                "customer_id": "heavy", "event_time": clock.isoformat(),
                "channel": rng.choice(["web", "app", "store", "email", "call_center", "other"]),
                "session_id": f"session-{i // 6:09d}"}
        kind = rng.random()
        if kind < 0.1:
            price = rng.randint(100, 50_000)
            yield {**base, "type": "purchase", "order_id": f"o{i}", "total": f"{price / 100:.2f}",
                   "items": [{"sku": f"s{i}", "category": rng.choice(categories), "quantity": 1,
                              "unit_price": f"{price / 100:.2f}"}]}
        elif kind < 0.12:
            yield {**base, "type": "refund", "order_id": f"o{i - 1}", "amount": "1.00"}
        elif kind < 0.13:
            yield {**base, "type": "support_contact", "kind": "complaint", "topic": "delivery"}
        else:
            yield {**base, "type": "product_view", "sku": f"s{i}", "category": rng.choice(categories)}


def test_a_customer_with_10000_events_stays_within_the_budget() -> None:
    # What the profile agent stores per event: the state, its cross-sell baskets, its tags, its
    # churn score, alerts sent, open predictions, the activity detector and the next boundary.
    rules, churn, cuts = load_rules(), ChurnConfig(), Cuts(days=(1, 2, 3, 4), orders=(2, 3, 5, 8))
    state = CustomerState(customer_id="heavy")
    largest = 0
    for raw in _events(10_000):
        event = parse_event(json.dumps(raw))
        applied, _ = apply_event(state, event)
        if isinstance(event, Purchase):
            applied = cross_sell(applied, event, DEFAULT_POLICY.lateness)[0]
        tagged = applied.model_copy(update={"tags": compute_tags(applied, event.event_time, rules, cuts)})
        assessed = assess(state, tagged, event.event_time, churn).state
        state = assessed.model_copy(update={"next_boundary_at": next_boundary(assessed, event.event_time, rules,
                                                                              churn)})
        largest = max(largest, len(state.model_dump_json()))
    assert state.pending and state.alerted and state.churn_probability is not None
    assert state.events == 10_000
    assert largest <= STATE_BYTE_BUDGET, f"state grew to {largest} bytes"
    assert len(state.daily) <= 30 and len(state.weekly) <= 54
    assert len(state.category_interest) <= 8
    assert len(state.recent_baskets) <= MAX_BASKETS and len(state.categories_bought) == MAX_CATEGORIES


def test_windows_agree_with_counting_the_events() -> None:
    events = list(_events(3_000, seed=2))
    state = CustomerState(customer_id="heavy")
    for raw in events:
        state, _ = apply_event(state, parse_event(json.dumps(raw)))
    now = state.last_event_at
    assert now is not None
    for days in (7, 30):
        start = now - timedelta(days=days)
        want = [e for e in events if datetime.fromisoformat(e["event_time"]).date() > start.date()]
        got = window(state.daily, state.weekly, now, days)
        assert got.orders == sum(1 for e in want if e["type"] == "purchase")
        assert got.clicks == sum(1 for e in want if e["type"] == "product_view")
    # Beyond 30 days the weekly buckets count whole weeks: exact to within one week's activity.
    year = window(state.daily, state.weekly, now, 365)
    start = now - timedelta(days=365)
    exact = sum(1 for e in events if e["type"] == "purchase" and datetime.fromisoformat(e["event_time"]) > start)
    assert exact <= year.orders <= exact + 15
