"""Tags at event time, and time-driven transitions: the next boundary is exactly when a
tag changes with no new event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState, parse_event
from stream.core.fold import apply_event
from stream.core.rules import load_rules
from stream.core.tagging import compute_tags, next_boundary, tag_changes

RULES = load_rules().with_scoring_mode("fixed")  # recency moves with time alone
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _buy(state: CustomerState, when: datetime, total: str, n: int) -> CustomerState:
    raw = {"type": "purchase", "event_id": f"e{n}", "customer_id": "c", "event_time": when.isoformat(),
           "order_id": f"o{n}", "total": total}
    return apply_event(state, parse_event(json.dumps(raw)))[0]


def test_a_regular_buyer_who_stops_moves_down_on_schedule() -> None:
    state = CustomerState(customer_id="c")
    for week in range(20):
        state = _buy(state, T0 + timedelta(weeks=week), "120.00", week)
    stopped = state.last_purchase_at
    assert stopped is not None
    tags = compute_tags(state, stopped, RULES)
    assert (tags.segment, tags.lifecycle, tags.value_tier) == ("Champions", "growing", "diamond")
    seen = [(tags.segment, tags.lifecycle)]
    now = stopped
    while (boundary := next_boundary(state, now, RULES)) is not None:
        assert boundary > now
        before = compute_tags(state, boundary - timedelta(seconds=1), RULES)
        after = compute_tags(state, boundary, RULES)
        assert before.tag_values() != after.tag_values()
        seen.append((after.segment, after.lifecycle))
        now = boundary
    segments = [s for s, _ in seen]
    stages = [stage for _, stage in seen]
    assert segments[0] == "Champions" and segments[-1] == "Can't Lose Them"
    assert "At Risk" in segments or "Loyal" in segments
    assert stages[-1] == "churned" and "declining" in stages
    assert now - stopped == timedelta(days=365, microseconds=1)  # the last change: R drops to 1


@settings(max_examples=150, deadline=None)
@given(gaps=st.lists(st.integers(0, 200), min_size=1, max_size=6), amounts=st.integers(1, 200_000),
       probe_days=st.integers(0, 800))
def test_no_tag_changes_strictly_between_boundaries(gaps: list[int], amounts: int, probe_days: int) -> None:
    state = CustomerState(customer_id="c")
    when = T0
    for i, gap in enumerate(gaps):
        when += timedelta(days=gap)
        state = _buy(state, when, f"{amounts / 100:.2f}", i)
    now = when + timedelta(days=probe_days % 400)
    boundary = next_boundary(state, now, RULES)
    current = compute_tags(state, now, RULES).tag_values()
    horizon = boundary if boundary is not None else now + timedelta(days=3000)
    step = now
    while step < horizon - timedelta(days=1):
        assert compute_tags(state, step, RULES).tag_values() == current
        step += timedelta(days=1)
    just_before = max(now, horizon - timedelta(microseconds=1))
    assert compute_tags(state, just_before, RULES).tag_values() == current
    if boundary is not None:
        assert compute_tags(state, boundary, RULES).tag_values() != current


def test_tag_change_ids_are_deterministic() -> None:
    state = _buy(CustomerState(customer_id="c"), T0, "10.00", 1)
    old, new = compute_tags(state, T0, RULES), compute_tags(state, T0 + timedelta(days=100), RULES)
    first = tag_changes("c", old, new, reason="time", event_time=T0, version=7, event_version=5)
    again = tag_changes("c", old, new, reason="time", event_time=T0, version=7, event_version=5)
    assert first == again and {c.change_id for c in first} == {f"c:{c.tag}:5.7" for c in first}


def test_behaviour_types() -> None:
    def tags_after(purchases: list[tuple[datetime, str]]) -> str | None:
        state = CustomerState(customer_id="c")
        for n, (when, total) in enumerate(purchases):
            state = _buy(state, when, total, n)
        assert state.last_purchase_at is not None
        return compute_tags(state, state.last_purchase_at, RULES).behaviour

    year = datetime(2024, 1, 15, tzinfo=UTC)
    christmas = [(datetime(2024, 11, 20, tzinfo=UTC) + timedelta(days=6 * i), "60.00") for i in range(6)]
    assert tags_after([(year, "60.00"), *christmas]) == "seasonal"
    monthly_small = [(year + timedelta(days=30 * i), "5.00") for i in range(10)]
    assert tags_after(monthly_small) == "high-frequency low-value"
    assert tags_after([(year, "1500.00")]) == "low-frequency high-value"
    assert tags_after([(year + timedelta(days=60 * i), "60.00") for i in range(5)]) == "regular"
