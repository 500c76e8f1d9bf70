"""The online churn model: scorers' plain-number scores equal River's, it learns, snapshots
restore exactly and refuse tampering, redeliveries are not learnt twice, and the drift
detectors fire on a seeded jump in the churn rate but not on a stationary stream."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import ChurnLabel, TagChange
from stream.core.churn import FEATURES, PROJECTION_DAYS, features, model_crossing
from stream.core.tagging import RERANKED
from stream.model import (
    Point,
    SegmentMixMonitor,
    SnapshotError,
    Trainer,
    in_time_reach,
    matched_threshold,
    transform,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _label(n: int, rng: random.Random, churn_rate: float | None = None) -> ChurnLabel:
    ratio = rng.lognormvariate(0, 0.8)
    gap = 1 + rng.random() * 29  # the customer's usual gap: silence counts against it
    vector = {name: rng.random() * 10 for name in FEATURES} | {"recency_ratio": ratio, "interval_mean_days": gap,
                                                               "recency_days": ratio * gap}
    # without a fixed rate, churn follows silence against the usual gap
    churn_p = 1 / (1 + (1 / ratio) ** 3) if churn_rate is None else churn_rate
    churned = rng.random() < churn_p
    return ChurnLabel(label_id=f"c{n}:{n}", customer_id=f"c{n}", predicted_at=T0 + timedelta(hours=n),
                      resolved_at=T0 + timedelta(hours=n, days=90), label=int(churned), features=vector,
                      score=min(0.99, ratio / 8 + rng.random() / 2), model_version="heuristic-1")  # a noisy heuristic



def _trained(seed: int, count: int, min_labels: int = 500, churn_rate: float | None = None) -> Trainer:
    rng = random.Random(seed)
    trainer = Trainer(min_labels=min_labels)
    for n in range(count):
        trainer.learn(_label(n, rng, churn_rate))
    return trainer

@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 300))
def test_the_published_params_score_exactly_as_the_learner(seed: int, count: int) -> None:
    rng = random.Random(seed)
    trainer = Trainer()
    for n in range(count):
        trainer.learn(_label(n, rng))
    params = trainer.params()
    for n in range(20):
        probe = _label(10_000 + n, rng).features
        assert params.score(probe).probability == pytest.approx(
            trainer.model.predict_proba_one(transform(probe)), abs=1e-9)
        assert params.probability(probe) == pytest.approx(params.score(probe).probability, abs=1e-12)


def test_it_learns_the_signal_and_explains_scores_by_contributions() -> None:
    rng = random.Random(3)
    trainer = Trainer(min_labels=500)
    for n in range(3000):
        trainer.learn(_label(n, rng))
    metrics = trainer.metrics()
    assert metrics["roc_auc"] > 0.8 and metrics["roc_auc"] > metrics["heuristic_roc_auc"] and trainer.ready
    params = trainer.params()
    usual = {name: 1.0 for name in FEATURES} | {"interval_mean_days": 10.0}
    silent = params.score(usual | {"recency_days": 60.0})
    active = params.score(usual | {"recency_days": 2.0})
    assert silent.probability > 0.7 > 0.3 > active.probability
    assert silent.explanation[0][0] == "recency_days" and silent.model_version == "logreg-v0"


def test_a_burst_of_one_class_does_not_hand_serving_back_to_the_heuristic() -> None:
    # A replay resolves churned labels in bursts, when the sweep ticks catch up with the events:
    # the choice is still made on both classes, the newest of each.
    trainer = _trained(3, 3000)
    assert trainer.ready
    rng = random.Random(4)
    for n in range(3000, 6000):
        trainer.learn(_label(n, rng, churn_rate=1.0))  # every one churned
    metrics = trainer.metrics()
    assert trainer.ready and metrics["recent_roc_auc"] > metrics["recent_heuristic_roc_auc"] > 0.5, metrics
    assert metrics["model_precision"] < 0.9 and metrics["heuristic_precision"] < 0.9  # not "all churned"


def test_a_snapshot_restores_the_model_and_its_progressive_metrics_and_refuses_tampering() -> None:
    rng = random.Random(5)
    trainer = Trainer()
    for n in range(800):
        trainer.learn(_label(n, rng), offset=n)
    record = json.loads(json.dumps(trainer.snapshot()))  # as published: JSON all the way
    restored = Trainer.restore(record)
    assert restored.version == trainer.version == 1 and restored.params() == trainer.params()
    assert restored.metrics() == trainer.metrics() and restored.offset == 799
    # a redelivered label (same id, or an offset already learnt) is not learnt again
    assert restored.learn(_label(5, random.Random(5)), offset=5) == [] and restored.labels_seen == 800
    forged = dict(record, trainer=record["trainer"][:-8] + "AAAAAAA=")
    with pytest.raises(SnapshotError, match="checksum"):
        Trainer.restore(forged)
    with pytest.raises(SnapshotError, match="River"):
        Trainer.restore(dict(record, river_version="0.0.1"))


def test_a_frozen_snapshot_is_the_trainer_as_it_was_when_frozen_while_it_learns_on() -> None:
    # the worker compresses a snapshot in a thread while the trainer learns the next labels
    rng = random.Random(6)
    trainer = Trainer()
    for n in range(800):
        trainer.learn(_label(n, rng), offset=n)
    frozen = trainer.freeze()
    params, metrics = trainer.params(), trainer.metrics()
    for n in range(800, 1200):
        trainer.learn(_label(n, rng), offset=n)
    restored = Trainer.restore(json.loads(json.dumps(frozen.record())))
    assert restored.offset == 799 and restored.labels_seen == 800 and trainer.labels_seen == 1200
    assert restored.params() == params and restored.metrics() == metrics and frozen.params() == params
    assert restored.version == 1 and trainer.freeze().params().version == 2


JUMP_AT = 3000  # labels before the churn rate jumps from 20% to 50%
BOUND = 400  # the population-drift record comes within this many labels of the jump


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_jump_in_the_churn_rate_raises_population_drift_within_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    trainer = Trainer()
    raised = []
    for n in range(2 * JUMP_AT):
        for record in trainer.learn(_label(n, rng, churn_rate=0.2 if n < JUMP_AT else 0.5)):
            raised.append((n, record))
    population = [n for n, record in raised if record.kind == "population_drift"]
    assert population and all(n >= JUMP_AT for n in population), population
    assert population[0] - JUMP_AT <= BOUND


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stationary_stream_of_the_same_length_raises_none(seed: int) -> None:
    rng = random.Random(seed)
    trainer = Trainer()
    kinds = [record.kind for n in range(2 * JUMP_AT) for record in trainer.learn(_label(n, rng, churn_rate=0.2))]
    assert "population_drift" not in kinds


def test_churned_labels_arriving_in_sweep_bursts_are_no_drift() -> None:
    # A purchase resolves its predictions at once, silence only when a sweep tick passes: here the
    # churned labels of each 20 days arrive together after the others. The base rate is judged by
    # the day of the prediction, once its labels can all have resolved, so the order is no signal.
    rng = random.Random(4)
    labels = [_label(n, rng, churn_rate=0.2) for n in range(2 * JUMP_AT)]
    trainer, held, kinds = Trainer(), [], []
    for label in labels:
        if label.label:
            held.append(label)
        else:
            kinds += [r.kind for r in trainer.learn(label)]
        if len(held) and label.predicted_at - held[0].predicted_at >= timedelta(days=20):
            for churned in held:
                kinds += [r.kind for r in trainer.learn(churned)]
            held = []
    assert "population_drift" not in kinds and trainer.labels_seen > 5000


def test_a_snapshot_from_before_the_daily_base_rate_monitor_restores_with_a_new_one() -> None:
    import pickle

    from river import drift

    trainer = _trained(6, 600)
    state = trainer.__getstate__()
    del state["label_rates"]
    state["base_rate"] = drift.ADWIN(delta=0.002)  # what a snapshot of the previous version holds
    old = Trainer.__new__(Trainer)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert not hasattr(old, "base_rate") and old.label_rates.signals == ("churn_base_rate",)
    old.learn(_label(600, random.Random(6)))
    assert old.labels_seen == 601


SEGMENTS = ["Champions", "Loyal", "At Risk", "Hibernating"]


def _mix(rng: random.Random, at_risk: float) -> str:
    return "At Risk" if rng.random() < at_risk else rng.choice([s for s in SEGMENTS if s != "At Risk"])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_shift_in_the_segment_mix_raises_population_drift_naming_the_segment(seed: int) -> None:
    rng = random.Random(seed)
    monitor = SegmentMixMonitor()
    raised = [(n, r) for n in range(2 * JUMP_AT)
              for r in monitor.observe(_mix(rng, 0.1 if n < JUMP_AT else 0.4), T0 + timedelta(hours=n))]
    at_risk = [n for n, r in raised if r.details["segment"] == "At Risk"]
    assert at_risk and at_risk[0] >= JUMP_AT and at_risk[0] - JUMP_AT <= BOUND
    rng = random.Random(seed)
    steady = SegmentMixMonitor()
    assert [r for n in range(2 * JUMP_AT) for r in steady.observe(_mix(rng, 0.1), T0)] == []


def _segment_change(n: int, segment: str, reason: str) -> TagChange:
    return TagChange(change_id=f"c{n}", customer_id=f"c{n % 500}", tag="segment", old=None, new=segment,
                     reason=reason, event_time=T0 + timedelta(hours=n), version=n, rules_version="1")


def test_the_segment_mix_watches_the_customers_moves_not_the_re_ranking() -> None:
    # the customers' own moves are steady; a burst of re-ranking into "At Risk" (the cut points
    # moved while a backlog was processed) is no drift, the same burst made by events is
    rng = random.Random(4)
    steady = [_segment_change(n, _mix(rng, 0.1), "event:purchase") for n in range(JUMP_AT)]
    burst = [_segment_change(JUMP_AT + n, "At Risk", RERANKED) for n in range(JUMP_AT // 2)]
    assert SegmentMixMonitor().observe_changes([*steady, *burst]) == []
    moved = [change.model_copy(update={"reason": "time"}) for change in burst]
    records = SegmentMixMonitor().observe_changes([*steady, *moved])
    at_risk = [r for r in records if r.details["segment"] == "At Risk"]
    assert at_risk and at_risk[0].details["share_now"] > at_risk[0].details["share_before"]
    # and only the segment tag counts
    others = [change.model_copy(update={"tag": "value_tier"}) for change in moved]
    assert SegmentMixMonitor().observe_changes([*steady, *others]) == []


def test_the_models_threshold_crossing_is_found_ahead_and_holds_when_reached() -> None:
    from tests.unit.test_churn import CONFIG, _buyer

    trainer = _trained(3, 3000, min_labels=100)
    params = trainer.params()
    assert params.ready
    state = _buyer(gap_days=20, orders=6)
    last = state.last_purchase_at
    assert last is not None
    # a threshold between today's score and the score after 60 more days of silence
    now_p = params.score(features(state, last, CONFIG)).probability
    later_p = params.score(features(state, last + timedelta(days=60), CONFIG)).probability
    assert later_p > now_p
    limit = (now_p + later_p) / 2
    params = replace(params, threshold=limit)
    crossing = model_crossing(state, last, CONFIG, params)
    assert crossing is not None and crossing > last
    assert params.score(features(state, last, CONFIG)).probability < limit
    assert params.score(features(state, crossing, CONFIG)).probability >= limit
    earlier = max(last, crossing - timedelta(days=3))
    assert params.score(features(state, earlier, CONFIG)).probability < limit or earlier == last


def test_the_models_threshold_warns_in_time_as_many_churned_points_as_the_heuristic() -> None:
    trainer = _trained(11, 4000, min_labels=100)
    params = trainer.params()
    assert params.ready and params.threshold is not None
    points = list(trainer.recent_points)
    reach, heuristic_warns = in_time_reach(params, points, 90, 0.7)
    churned = [p.churned for p in points]
    positives = sum(churned)
    heuristic_recall = sum(1 for w, c in zip(heuristic_warns, churned, strict=True) if w and c) / positives
    model_recall = sum(1 for r, c in zip(reach, churned, strict=True) if c and r >= params.threshold) / positives
    # the highest threshold with at least the heuristic's in-time recall
    assert heuristic_recall <= model_recall <= heuristic_recall + 1 / positives + 1e-9
    assert params.metrics["model_recall"] == round(model_recall, 4)
    assert 0 <= params.metrics["model_precision"] <= 1 and 0 <= params.metrics["heuristic_precision"] <= 1


def test_the_published_precisions_stand_for_the_population_not_the_windows_mix() -> None:
    # The threshold's points hold the newest of each class, so their mix is not the
    # population's: weighted by the base rate, twice the non-churned points change nothing.
    trainer = _trained(11, 4000, min_labels=100)
    params, points = trainer.params(), list(trainer.recent_points)
    stayed = [p for p in points if not p.churned]
    once = matched_threshold(params, points, 90, 0.7, base_rate=0.2)
    twice = matched_threshold(params, points + stayed, 90, 0.7, base_rate=0.2)
    assert once[0] == twice[0] and once[1] == twice[1]
    # unweighted, a window with more churned points than the population (a third against a
    # fifth here) overstates precision
    unweighted = matched_threshold(params, points + stayed, 90, 0.7)
    assert sum(p.churned for p in points) / len(points + stayed) > 0.2
    assert unweighted[1]["model_precision"] > once[1]["model_precision"]


def test_a_points_reach_is_the_projected_score_at_the_end_of_its_silence() -> None:
    from stream.core.churn import ChurnScore, projected

    trainer = _trained(5, 600, min_labels=10)
    params = trainer.params()
    vector = {name: 1.0 for name in FEATURES} | {"recency_days": 10.0, "frequency": 3.0, "interval_mean_days": 20.0,
                                                 "recency_ratio": 0.5}
    churner = Point(tuple(vector[name] for name in FEATURES), True, 80.0)  # silent until H = 90 days
    buyer = Point(churner.vector, False, 12.5)  # bought again 12.5 days later
    reach, _ = in_time_reach(params, [churner, buyer], 90, 0.7)

    def best(window: float) -> float:
        scores: list[ChurnScore] = [params.score(vector)] + [
            params.score(projected(vector, ahead, 20.0)) for ahead in PROJECTION_DAYS if ahead < window]
        return max(s.probability for s in scores)

    assert reach[0] == pytest.approx(best(80.0), abs=1e-9)
    assert reach[1] == pytest.approx(best(12.5), abs=1e-9)


def test_no_threshold_is_chosen_from_too_few_churned_points() -> None:
    trainer = _trained(2, 200, min_labels=1, churn_rate=0.05)  # about 10 churned points
    assert trainer.matched() == (None, {}) and not trainer.ready


def test_a_mix_that_keeps_moving_is_reported_at_most_monthly_per_segment() -> None:
    # a cohort ageing: the share of changes into "Hibernating" grows from 5% to 60% over 120 days
    rng, monitor, records = random.Random(3), SegmentMixMonitor(), []
    steps = 24_000
    for n in range(steps):
        share = 0.05 + 0.55 * n / steps
        segment = "Hibernating" if rng.random() < share else rng.choice(["Champions", "Loyal", "New Customers"])
        records += monitor.observe(segment, T0 + timedelta(days=120 * n / steps))
    hibernating = [r for r in records if r.details["segment"] == "Hibernating"]
    assert 1 <= len(hibernating) <= 5  # 120 days, one record a month at most
    assert all(b.at - a.at >= timedelta(days=30) for a, b in zip(hibernating, hibernating[1:], strict=False))
    assert all(abs(r.details["share_now"] - r.details["share_before"]) >= 0.05 for r in records)


def test_the_purchase_models_score_is_measured_on_the_same_labels_side_by_side() -> None:
    rng, trainer = random.Random(5), Trainer(min_labels=100)
    for n in range(1500):
        label = _label(n, rng)
        informative = 1 / (1 + (1 / label.features["recency_ratio"]) ** 3)  # what churn follows here
        trainer.learn(label.model_copy(update={"features": {**label.features, "purchase_churn": informative}}))
    metrics = trainer.metrics()
    assert metrics["purchase_model_roc_auc"] > metrics["heuristic_roc_auc"] > 0.5
