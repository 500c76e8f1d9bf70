"""Tag rules: the packaged YAML is complete, bad rule files are refused clearly, and the
lifecycle boundary predicts the next stage change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.rfm import RfmScore
from stream.core.rules import (
    Lifecycle,
    LifecycleRules,
    RulesError,
    lifecycle_stage,
    load_rules,
    next_lifecycle_boundary,
)

RULES = load_rules()
HEAD = "version: v\nscoring: {mode: population}\n"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_the_default_rules_name_all_eleven_segments_and_four_tiers() -> None:
    names = {RULES.segment(RfmScore(r, f, m)) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert names == {"Champions", "Loyal", "Potential Loyalist", "New Customers", "Promising",
                     "Need Attention", "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost"}
    tiers = {RULES.value_tier(RfmScore(3, f, m)) for f in range(1, 6) for m in range(1, 6)}
    assert tiers == {"diamond", "gold", "silver", "bronze"}
    assert RULES.version


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (HEAD + "segments: [{name: A, r: [1, 5], fm: [1, 4]}]\nvalue_tiers: [{name: b}]\n", "(5, 5)"),
        (HEAD + "segments: [{name: A, r: [0, 5], fm: [1, 5]}]\nvalue_tiers: [{name: b}]\n", "segments.0.r"),
        (HEAD + "segments: [{name: A, r: [1, 5], fm: [1, 5]}]\nvalue_tiers: [{name: b, min_m: 2}]\n",
         "a tier for everyone"),
        (HEAD + "segments: [{name: A, r: [1, 5], fm: [1, 5]}]\nvalue_tiers: [{name: b}]\n"
         "lifecycle: {declining_days: 200, churned_days: 100}\n", "declining_days must be less"),
        ("segments: [\n", "not valid YAML"),
    ],
)
def test_a_bad_rules_file_names_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as excinfo:
        load_rules(path)
    assert str(path) in str(excinfo.value) and problem in str(excinfo.value)


def test_a_customer_who_stops_buying_declines_then_churns_and_can_be_reactivated() -> None:
    rules = LifecycleRules()
    first, last = T0, T0 + timedelta(days=100)

    def stage(now: datetime, **kw: object) -> Lifecycle:
        args = {"orders": 5, "first_purchase_at": first, "last_purchase_at": last,
                "previous_purchase_at": last - timedelta(days=20)} | kw
        return lifecycle_stage(rules, now=now, **args)  # type: ignore[arg-type]

    assert stage(T0 - timedelta(days=1), orders=0, first_purchase_at=None, last_purchase_at=None) is Lifecycle.PROSPECT
    assert stage(T0 + timedelta(days=5), orders=1, last_purchase_at=first, previous_purchase_at=None) is Lifecycle.NEW
    assert stage(last + timedelta(days=10)) is Lifecycle.GROWING
    assert stage(T0 + timedelta(days=185)) is Lifecycle.MATURE
    assert stage(last + timedelta(days=95)) is Lifecycle.DECLINING
    assert stage(last + timedelta(days=181)) is Lifecycle.CHURNED
    back = last + timedelta(days=200)
    assert stage(back + timedelta(days=3), last_purchase_at=back, previous_purchase_at=last) is Lifecycle.REACTIVATED


@settings(max_examples=300, deadline=None)
@given(first=st.integers(0, 400), gaps=st.lists(st.integers(0, 250), max_size=3), probe=st.integers(0, 900))
def test_the_next_boundary_is_exactly_the_next_stage_change(first: int, gaps: list[int], probe: int) -> None:
    rules = LifecycleRules()
    purchases = [T0 + timedelta(days=first)]
    for gap in gaps:
        purchases.append(purchases[-1] + timedelta(days=gap))
    now = purchases[-1] + timedelta(days=probe % 300)
    kw = {"orders": len(purchases), "first_purchase_at": purchases[0], "last_purchase_at": purchases[-1],
          "previous_purchase_at": purchases[-2] if len(purchases) > 1 else None}
    boundary = next_lifecycle_boundary(rules, now=now, **kw)  # type: ignore[arg-type]
    current = lifecycle_stage(rules, now=now, **kw)  # type: ignore[arg-type]
    if boundary is None:
        for days in (1, 30, 90, 180, 365, 2000):
            assert lifecycle_stage(rules, now=now + timedelta(days=days), **kw) is current  # type: ignore[arg-type]
        return
    assert boundary > now
    assert lifecycle_stage(rules, now=boundary, **kw) is not current  # type: ignore[arg-type]
    # No change strictly before the boundary (checked hourly in the last day, daily before).
    step = now
    while step < boundary - timedelta(days=1):
        assert lifecycle_stage(rules, now=step, **kw) is current  # type: ignore[arg-type]
        step += timedelta(days=1)
    assert lifecycle_stage(rules, now=boundary - timedelta(seconds=1), **kw) is current  # type: ignore[arg-type]
