"""Churn features, the heuristic score, its threshold-crossing boundary, and alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState, CustomerTags, parse_event
from stream.core.alerts import assess
from stream.core.churn import (
    FEATURES,
    HEURISTIC_VERSION,
    PURCHASE_FEATURES,
    ChurnConfig,
    churn_boundary,
    features,
    heuristic_score,
    threshold_crossing,
)
from stream.core.fold import apply_event

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CONFIG = ChurnConfig()


def _apply(state: CustomerState, raw: dict) -> CustomerState:
    return apply_event(state, parse_event(json.dumps(raw)))[0]


def _buyer(gap_days: int, orders: int) -> CustomerState:
    state = CustomerState(customer_id="c")
    for n in range(orders):
        state = _apply(state, {"type": "purchase", "event_id": f"p{n}", "customer_id": "c", "order_id": f"o{n}",
                               "event_time": (T0 + timedelta(days=gap_days * n)).isoformat(), "total": "50.00"})
    return state


def _complain(state: CustomerState, when: datetime, n: int) -> CustomerState:
    return _apply(state, {"type": "support_contact", "event_id": f"s{n}", "customer_id": "c", "kind": "complaint",
                          "event_time": when.isoformat()})


def test_features_are_complete_and_recency_is_measured_against_the_customers_own_gap() -> None:
    state = _buyer(gap_days=10, orders=5)
    last = state.last_purchase_at
    assert last is not None
    got = features(state, last + timedelta(days=25), CONFIG)
    assert set(got) == set(FEATURES)  # no purchase model fitted: none of PURCHASE_FEATURES
    assert got["recency_days"] == 25 and got["interval_mean_days"] == 10 and got["recency_ratio"] == 2.5
    assert got["frequency"] == 5 and got["monetary"] == 250 and got["avg_order_value"] == 50


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 120), st.integers(1, 8), st.integers(0, 3))
def test_the_score_only_grows_with_silence_and_crosses_the_threshold_at_the_boundary(
        gap: int, orders: int, complaints: int) -> None:
    state = _buyer(gap, orders)
    last = state.last_purchase_at
    assert last is not None
    for n in range(complaints):
        state = _complain(state, last, n)
    scores = [heuristic_score(state, last + timedelta(days=d), CONFIG).probability for d in range(0, 400, 7)]
    assert scores == sorted(scores)
    crossing = threshold_crossing(state, last, CONFIG)
    if crossing is None:  # already at the threshold on the day of the last purchase
        assert heuristic_score(state, last + timedelta(seconds=1), CONFIG).probability >= CONFIG.threshold
        return
    before = heuristic_score(state, crossing - timedelta(seconds=1), CONFIG)
    at = heuristic_score(state, crossing, CONFIG)
    assert before.probability < CONFIG.threshold <= at.probability
    assert churn_boundary(state, last, CONFIG) is not None


def _walk(state: CustomerState, until: datetime) -> tuple[CustomerState, list]:
    """What the sweeper does: visit each boundary in turn and assess the customer there."""
    alerts = []
    now = state.last_event_at
    assert now is not None
    state = assess(state, state, now, CONFIG).state
    while (boundary := churn_boundary(state, now, CONFIG)) is not None and boundary <= until:
        stepped = state.model_copy(update={"revision": state.revision + 1})
        assessed = assess(state, stepped, boundary, CONFIG)
        alerts += assessed.alerts
        state, now = assessed.state, boundary
    return state, alerts


def test_a_silent_customer_gets_one_inactivity_and_one_churn_risk_alert_in_order() -> None:
    state = _buyer(gap_days=20, orders=6)
    last = state.last_purchase_at
    assert last is not None
    state, alerts = _walk(state, last + timedelta(days=365))
    # six active days in 100: twice the usual gap is reached first, the churn odds at 84 days
    assert [a.kind for a in alerts] == ["inactivity", "churn_risk"]
    idle, risk = alerts
    assert last + timedelta(days=80) < risk.event_time < last + timedelta(days=CONFIG.horizon_days)
    assert risk.score is not None and risk.score >= CONFIG.threshold
    assert risk.explanation[0].feature == "silence" and risk.explanation[0].contribution > 0
    assert idle.event_time == last + timedelta(days=40, microseconds=1)  # 2 x the 20-day gap
    assert len({a.alert_id for a in alerts}) == 2 and all(a.alert_id.startswith("c:") for a in alerts)
    assert state.alerted == {"churn_risk": risk.event_time, "inactivity": idle.event_time}


def test_a_purchase_resets_the_score_and_a_new_crossing_alerts_again_after_the_cooldown() -> None:
    state = _buyer(gap_days=20, orders=6)
    last = state.last_purchase_at
    assert last is not None
    state, first = _walk(state, last + timedelta(days=100))
    back = _apply(state, {"type": "purchase", "event_id": "p-back", "customer_id": "c", "order_id": "o-back",
                          "event_time": (last + timedelta(days=100)).isoformat(), "total": "50.00"})
    back = assess(state, back, last + timedelta(days=100), CONFIG).state
    assert back.churn_probability is not None and back.churn_probability < 0.01
    _, second = _walk(back, last + timedelta(days=400))
    assert "churn_risk" in [a.kind for a in second]
    assert all(b.event_time - a.event_time >= timedelta(days=CONFIG.cooldown_days)
               for a in first for b in second if a.kind == b.kind)


def test_a_burst_of_complaints_raises_one_complaint_spike_within_the_cooldown() -> None:
    state = assess(CustomerState(customer_id="c"), _buyer(gap_days=5, orders=3), T0, CONFIG).state
    kinds = []
    for n in range(12):  # a complaint every two days
        when = T0 + timedelta(days=12 + 2 * n)
        after = _complain(state, when, n)
        assessed = assess(state, after, when, CONFIG)
        kinds += [a.kind for a in assessed.alerts]
        state = assessed.state
    assert kinds.count("complaint_spike") == 1


def test_a_champion_falling_to_at_risk_is_a_segment_downgrade_with_high_severity_for_gold() -> None:
    state = _buyer(gap_days=5, orders=3)
    champion = state.model_copy(update={"tags": CustomerTags(segment="Champions", value_tier="gold")})
    fallen = champion.model_copy(update={"tags": CustomerTags(segment="At Risk", value_tier="gold"),
                                         "revision": champion.revision + 1})
    alerts = assess(champion, fallen, T0 + timedelta(days=11), CONFIG).alerts
    downgrade = [a for a in alerts if a.kind == "segment_downgrade"]
    assert len(downgrade) == 1 and downgrade[0].severity == "high"
    assert downgrade[0].reason == "segment moved from Champions to At Risk"
    assert downgrade[0].alert_id == f"c:segment_downgrade:{fallen.revision}"


def test_predictions_are_labelled_0_by_a_purchase_within_h_days_and_1_when_h_days_pass() -> None:
    state = CustomerState(customer_id="c")
    labels = []
    for n in range(10):  # a purchase every 40 days, then silence
        when = T0 + timedelta(days=40 * n)
        after = _apply(state, {"type": "purchase", "event_id": f"p{n}", "customer_id": "c", "order_id": f"o{n}",
                               "event_time": when.isoformat(), "total": "50.00"})
        assessed = assess(state, after, when, CONFIG)
        labels += assessed.labels
        state = assessed.state
        assert len(state.pending) <= CONFIG.max_pending
    last = state.last_purchase_at
    assert last is not None
    now = last
    while (boundary := churn_boundary(state, now, CONFIG)) is not None:
        assessed = assess(state, state.model_copy(update={"revision": state.revision + 1}), boundary, CONFIG)
        labels += assessed.labels
        state, now = assessed.state, boundary
    # one prediction per purchase (each answered by the next), then the silent spell's ones
    outcomes = [label.label for label in labels]
    assert outcomes[:9] == [0] * 9 and outcomes[9:] and set(outcomes[9:]) == {1}
    assert all(label.resolved_at - label.predicted_at <= timedelta(days=CONFIG.horizon_days) for label in labels)
    assert labels[9].resolved_at == last + timedelta(days=CONFIG.horizon_days)
    assert set(labels[-1].features) == set(FEATURES)
    assert len({label.label_id for label in labels}) == len(labels)
    assert state.pending == ()


def _visits(days: list[int]) -> list:
    state, kinds = CustomerState(customer_id="c"), []
    for n, day in enumerate(days):
        when = T0 + timedelta(days=day)
        after = _apply(state, {"type": "page_view", "event_id": f"v{n}", "customer_id": "c",
                               "event_time": when.isoformat(), "url": "/"})
        assessed = assess(state, after, when, CONFIG)
        kinds += [(day, a.kind) for a in assessed.alerts]
        state = assessed.state
    return kinds


def test_active_days_drifting_apart_raise_one_activity_drop_and_steady_visits_none() -> None:
    rng = __import__("random").Random(4)
    steady, day = [], 0
    for _ in range(120):
        day += rng.choice([1, 1, 2, 2, 3])
        steady.append(day)
    assert _visits(steady) == []
    slowing = list(steady[:60])
    for gap in (5, 8, 12, 16, 21, 27):
        slowing.append(slowing[-1] + gap)
    drops = [(d, kind) for d, kind in _visits(slowing) if kind == "activity_drop"]
    assert len(drops) == 1 and drops[0][0] > steady[59]


class _FixedModel:
    """A ready model whose score grows with silence, with its own threshold of 0.3."""

    ready = True
    threshold = 0.3
    version = "logreg-test"
    adds_warnings = True

    def score(self, vector):  # type: ignore[no-untyped-def]
        from stream.core.churn import ChurnScore

        p = min(0.99, vector["recency_ratio"] / 10)
        return ChurnScore(p, self.version, (("recency_ratio", p),))

    def probability(self, vector):  # type: ignore[no-untyped-def]
        return self.score(vector).probability


def test_a_ready_model_alerts_at_its_own_threshold_and_its_crossing_is_the_next_boundary() -> None:
    from stream.core.churn import model_crossing

    model = _FixedModel()
    state = _buyer(gap_days=10, orders=4)
    last = state.last_purchase_at
    assert last is not None
    # the model's probability passes 0.3 (far below the configured 0.7) at 3 x the gap
    crossing = model_crossing(state, last, CONFIG, model)
    assert crossing is not None and timedelta(days=30) <= crossing - last <= timedelta(days=31)
    before = assess(state, state, last, CONFIG, model).state
    assert before.churn_threshold == 0.3 and before.churn_model == "logreg-test"
    at = assess(before, before, crossing, CONFIG, model)
    risk = [a for a in at.alerts if a.kind == "churn_risk"]
    assert len(risk) == 1 and risk[0].model_version == "logreg-test"
    assert risk[0].score is not None and 0.3 <= risk[0].score < CONFIG.threshold
    assert "0.30 threshold" in risk[0].reason
    # and once there, no second alert for the same crossing
    assert [a for a in assess(at.state, at.state, crossing + timedelta(days=1), CONFIG, model).alerts
            if a.kind == "churn_risk"] == []


class _ImpreciseModel(_FixedModel):
    """The same model, measured as costing precision beside the heuristic."""

    adds_warnings = False


def test_a_model_whose_warnings_cost_precision_serves_its_score_but_only_the_heuristic_warns() -> None:
    from stream.core.churn import model_crossing, threshold_crossing

    model = _ImpreciseModel()
    config = ChurnConfig(inactivity_factor=20.0)
    state = _buyer(gap_days=10, orders=4)
    last = state.last_purchase_at
    assert last is not None
    own, heuristic = model_crossing(state, last, config, model), threshold_crossing(state, last, config)
    assert own is not None and heuristic is not None and own < heuristic
    assert churn_boundary(state, last, config, model) == heuristic  # its own crossing is no boundary
    before = assess(state, state, last, config, model).state
    at_own = assess(before, before, own + timedelta(days=1), config, model)
    assert at_own.state.churn_model == "logreg-test" and at_own.state.churn_probability >= 0.3  # it serves
    assert [a for a in at_own.alerts if a.kind == "churn_risk"] == []  # and does not warn
    risk = [a for a in assess(at_own.state, at_own.state, heuristic, config, model).alerts if a.kind == "churn_risk"]
    assert len(risk) == 1 and risk[0].model_version == HEURISTIC_VERSION
    # warn_by="served" asks for the model's warnings whatever they cost
    served = ChurnConfig(inactivity_factor=20.0, warn_by="served")
    assert [a.kind for a in assess(before, before, own + timedelta(days=1), served, model).alerts
            if a.kind == "churn_risk"] == ["churn_risk"]


class _QuietModel(_FixedModel):
    """A ready model that never reaches its threshold."""

    def score(self, vector):  # type: ignore[no-untyped-def]
        from stream.core.churn import ChurnScore

        return ChurnScore(0.01, self.version, (("frequency", -2.0),))


def test_while_a_model_serves_the_heuristics_crossing_still_warns_and_is_a_boundary() -> None:
    from stream.core.churn import threshold_crossing

    model = _QuietModel()
    config = ChurnConfig(inactivity_factor=20.0)  # so that the crossing is the first boundary
    state = _buyer(gap_days=10, orders=4)
    last = state.last_purchase_at
    assert last is not None
    crossing = threshold_crossing(state, last, config)
    assert crossing is not None and churn_boundary(state, last, config, model) == crossing
    before = assess(state, state, last, config, model).state
    assert (before.churn_probability, before.churn_model) == (0.01, "logreg-test")  # the model serves
    at = assess(before, before, crossing, config, model)
    risk = [a for a in at.alerts if a.kind == "churn_risk"]
    assert len(risk) == 1 and risk[0].model_version == HEURISTIC_VERSION and risk[0].threshold == config.threshold
    assert risk[0].score is not None and risk[0].score >= config.threshold
    assert at.state.churn_probability == 0.01  # the served score is still the model's
    # one warning per silence, whichever scorer raised it
    assert [a for a in assess(at.state, at.state, crossing + timedelta(days=40), config, model).alerts
            if a.kind == "churn_risk"] == []


class _SteadyModel(_FixedModel):
    """A ready model whose score stays at 0.5 (above its 0.3 threshold) through purchases."""

    def score(self, vector):  # type: ignore[no-untyped-def]
        from stream.core.churn import ChurnScore

        return ChurnScore(0.5, self.version, (("frequency", 0.5),))


def test_each_silence_gets_one_churn_risk_even_when_the_score_stays_above_through_a_purchase() -> None:
    model = _SteadyModel()
    state, when = CustomerState(customer_id="c"), T0

    def buy(state: CustomerState, when: datetime, n: int) -> tuple[CustomerState, list[str]]:
        after = _apply(state, {"type": "purchase", "event_id": f"q{n}", "customer_id": "c", "order_id": f"q{n}",
                               "event_time": when.isoformat(), "total": "20.00"})
        assessed = assess(state, after, when, CONFIG, model)
        return assessed.state, [a.kind for a in assessed.alerts if a.kind == "churn_risk"]

    state, kinds = buy(state, when, 0)
    assert kinds == ["churn_risk"]
    state, kinds = buy(state, when + timedelta(days=40), 1)  # a new silence, past the cooldown
    assert kinds == ["churn_risk"]
    # the next silence starts within the cooldown: deferred to its end, which is a boundary
    state, kinds = buy(state, when + timedelta(days=50), 2)
    assert kinds == []
    due = when + timedelta(days=40 + CONFIG.cooldown_days)
    assert churn_boundary(state, when + timedelta(days=50), CONFIG, model) == due
    again = assess(state, state, due, CONFIG, model)
    assert [a.kind for a in again.alerts if a.kind == "churn_risk"] == ["churn_risk"]
    # and nothing more in that silence
    later = assess(again.state, again.state, due + timedelta(days=31), CONFIG, model)
    assert [a.kind for a in later.alerts if a.kind == "churn_risk"] == []


def test_with_a_fitted_purchase_model_the_features_carry_its_outlook_which_silence_raises() -> None:
    from stream.core.purchase import BgNbd, GammaGamma
    from stream.core.purchase_outlook import PurchaseModel

    state = _buyer(gap_days=20, orders=6)
    last = state.last_purchase_at
    assert last is not None
    model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), as_of_day=0,
                          customers=1000, repeat_buyers=400)
    soon, later = (features(state, last + timedelta(days=d), CONFIG, model) for d in (5, 120))
    assert set(soon) == set(FEATURES) | set(PURCHASE_FEATURES)
    assert 0 < soon["purchase_churn"] < later["purchase_churn"] < 1
    assert soon["expected_orders"] > later["expected_orders"] >= 0


def test_silence_counts_from_the_last_event_of_any_kind_against_the_customers_pace() -> None:
    buyer = _buyer(gap_days=10, orders=4)  # four active days in a month
    last = buyer.last_purchase_at
    assert last is not None
    browser = buyer
    for day in range(3, 73, 3):  # the same purchases, then a page view every third day for 72 days
        browser = _apply(browser, {"type": "page_view", "event_id": f"v{day}", "customer_id": "c",
                                   "event_time": (last + timedelta(days=day)).isoformat()})
    assert (buyer.active_days, browser.active_days) == (4, 28)
    quiet, busy = threshold_crossing(buyer, last, CONFIG), threshold_crossing(browser, last, CONFIG)
    assert quiet is not None and busy is not None and browser.last_event_at is not None
    # still around while browsing: not at risk when the buyer who stopped already is
    browsing, stopped = heuristic_score(browser, quiet, CONFIG), heuristic_score(buyer, quiet, CONFIG)
    assert browsing is not None and stopped is not None
    assert browsing.probability < CONFIG.threshold <= stopped.probability
    # a busier customer's silence weighs more: the same odds after a shorter silence
    assert busy - browser.last_event_at < quiet - last


def test_with_warn_by_served_only_the_serving_model_warns() -> None:
    from stream.core.churn import threshold_crossing

    model = _QuietModel()
    config = ChurnConfig(inactivity_factor=20.0, warn_by="served")
    state = _buyer(gap_days=10, orders=4)
    last = state.last_purchase_at
    assert last is not None
    crossing = threshold_crossing(state, last, config)
    assert crossing is not None
    boundary = churn_boundary(state, last, config, model)
    assert boundary is None or boundary > crossing  # the heuristic's crossing is no longer a boundary
    before = assess(state, state, last, config, model).state
    at = assess(before, before, crossing + timedelta(days=1), config, model)
    assert [a for a in at.alerts if a.kind == "churn_risk"] == []  # the quiet model never warns
    # with no model ready, the heuristic serves and warns as before
    alone = assess(state, state, crossing, config)
    assert [a.kind for a in alone.alerts if a.kind == "churn_risk"] == ["churn_risk"]
