"""Churn-warning alerts and delayed labels: :func:`assess` scores a customer's new state,
raises the alerts its change calls for (churn risk, high value at risk, inactivity, activity
drop by a per-customer Page-Hinkley detector, segment downgrade, complaint spike), resolves
open prediction points into labels and opens new ones."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from schemas import Alert, AlertOutcome, ChurnLabel, Contribution, CustomerState
from stream.core.churn import (
    HEURISTIC_VERSION,
    ChurnConfig,
    Scorer,
    alert_threshold,
    days_between,
    features,
    heuristic_score,
    inactivity_moment,
    typical_gap_days,
    warning_scorers,
)
from stream.core.holdout import in_holdout
from stream.core.purchase_outlook import PurchaseModel

DOWNGRADE_FROM = frozenset({"Champions", "Loyal"})
DOWNGRADE_TO = frozenset({"At Risk", "Can't Lose Them", "Hibernating", "Lost"})
HIGH_VALUE_TIERS = frozenset({"diamond", "gold"})
CHURN_WARNINGS = frozenset({"churn_risk", "high_value_at_risk"})  # raised by a churn score reaching its threshold

T = TypeVar("T")

PH_DELTA = 0.1  # tolerated increase of the mean log gap before it counts
PH_LAMBDA = 2.5  # cumulative excess (in log days) that signals a drop in activity
PH_MIN_DAYS = 8  # active days seen before the detector may fire


def page_hinkley(detector: tuple[int, float, float, float], x: float) -> tuple[tuple[int, float, float, float], bool]:
    """One Page-Hinkley step for an increase in the mean of ``x`` (here: the log of the days
    between a customer's active days, so an increase is a drop in activity). The state is four
    numbers — count, mean, cumulative excess, its minimum — and resets after a detection.

    >>> state, fired = (0, 0.0, 0.0, 0.0), []
    >>> for gap in [1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 9, 14, 20]:
    ...     state, drift = page_hinkley(state, math.log1p(gap)); fired.append(drift)
    >>> fired.index(True)
    11
    """
    n, mean, cumulative, minimum = detector
    n += 1
    mean += (x - mean) / n
    cumulative += x - mean - PH_DELTA
    minimum = min(minimum, cumulative)
    if n >= PH_MIN_DAYS and cumulative - minimum > PH_LAMBDA:
        return (0, 0.0, 0.0, 0.0), True
    return (n, mean, cumulative, minimum), False


def _active_day_gap(before: CustomerState, after: CustomerState) -> float | None:
    """Days between the customer's previous active day and a new one (None: same day, or first)."""
    if before.last_event_at is None or after.last_event_at is None:
        return None
    gap = int(after.last_event_at.timestamp() // 86_400) - int(before.last_event_at.timestamp() // 86_400)
    return float(gap) if gap > 0 else None


@dataclass(frozen=True)
class Assessment:
    """A customer's churn score at an event time, the alerts it raised, and the delayed
    labels it resolved."""

    state: CustomerState
    alerts: tuple[Alert, ...]
    labels: tuple[ChurnLabel, ...] = ()
    outcomes: tuple[AlertOutcome, ...] = ()


def _resolve(opened: Iterable[T], moment: Callable[[T], datetime], now: datetime, purchased_at: datetime | None,
             config: ChurnConfig) -> tuple[list[tuple[T, bool, datetime]], tuple[T, ...]]:
    """Split open items (predictions, alerts) opened at ``moment(item)`` into those resolved now,
    each with whether a purchase resolved it and when (a purchase within H days after it; else
    event time passing H days after it), and those still open."""
    horizon = timedelta(days=config.horizon_days)
    resolved, still_open = [], []
    for item in opened:
        at = moment(item)
        if purchased_at is not None and at < purchased_at <= at + horizon:
            resolved.append((item, True, purchased_at))
        elif at + horizon <= now:
            resolved.append((item, False, at + horizon))
        else:
            still_open.append(item)
    return resolved, tuple(still_open)


def resolve_labels(state: CustomerState, now: datetime, purchased_at: datetime | None,
                   config: ChurnConfig) -> tuple[tuple[ChurnLabel, ...], tuple]:
    """Resolve open predictions: a purchase within H days of one labels it 0; event time
    passing H days after it with no purchase labels it 1. Returns (labels, still open)."""
    resolved, still_open = _resolve(state.pending, lambda item: item[0], now, purchased_at, config)
    return tuple(ChurnLabel(label_id=f"{state.customer_id}:{predicted_at.isoformat()}", customer_id=state.customer_id,
                            predicted_at=predicted_at, resolved_at=resolved_at, label=0 if bought else 1,
                            features=vector, score=score, model_version=HEURISTIC_VERSION)
                 for (predicted_at, score, vector), bought, resolved_at in resolved), still_open


def resolve_outcomes(state: CustomerState, now: datetime, purchased_at: datetime | None,
                     config: ChurnConfig) -> tuple[tuple[AlertOutcome, ...], tuple]:
    """Resolve open alerts as :func:`resolve_labels` resolves predictions: converted by a
    purchase within H days after the alert, not converted once H days pass. Returns (outcomes,
    still open)."""
    resolved, still_open = _resolve(state.open_alerts, lambda item: item[1], now, purchased_at, config)
    return tuple(AlertOutcome(alert_id=alert_id, customer_id=state.customer_id, kind=alert_id.rsplit(":", 2)[-2],
                              holdout=holdout, alerted_at=alerted_at, resolved_at=resolved_at, converted=bought,
                              horizon_days=config.horizon_days)
                 for (alert_id, alerted_at, holdout), bought, resolved_at in resolved), still_open


def _with_prediction(pending: tuple, now: datetime, score: float | None, state: CustomerState,
                     config: ChurnConfig, purchase: PurchaseModel | None) -> tuple:
    """Open a prediction point at ``now`` unless one is recent or the customer has enough open
    (the features are computed only then: most events open none)."""
    if len(pending) >= config.max_pending:
        return pending
    if pending and now - pending[-1][0] < timedelta(days=config.prediction_spacing_days):
        return pending
    return (*pending, (now, score, {k: round(v, 4) for k, v in features(state, now, config, purchase).items()}))


def assess(before: CustomerState, after: CustomerState, now: datetime, config: ChurnConfig,
           model: Scorer | None = None, purchase: PurchaseModel | None = None) -> Assessment:
    """Score ``after`` at ``now`` and raise the alerts that its change from ``before`` calls
    for, each at most once per ``cooldown_days`` per kind (event time). ``after`` carries its
    new tags and revision; the alert ids use that revision, so they are deterministic.

    The score is the online model's once it is ``ready``, else the heuristic's; open
    predictions keep the heuristic's score, so the trainer can compare the two. A churn
    warning is raised by the scorers :func:`stream.core.churn.warning_scorers` names, each at
    its own threshold: while the model serves, the heuristic still warns (the model ranks
    customers better, but a warning the heuristic would have given must not be lost by the
    switch), and the model's own warnings join it only while they cost no precision
    (docs/churn-model.md)."""
    heuristic = heuristic_score(after, now, config)
    score = heuristic
    limit = config.threshold
    if heuristic is not None and model is not None and model.ready:
        score = model.score(features(after, now, config))
        limit = alert_threshold(config, model)
    previous_at = before.churn_as_of
    candidates: list[tuple[str, str, str]] = []  # kind, severity, reason
    p = score.probability if score else None
    # One churn_risk per silence: at or above the threshold of the scorer behind it, and none
    # yet since the last purchase. (The heuristic falls to ~0 at a purchase, so this is its
    # upward crossing; a model's score may stay above through a purchase, and the new silence
    # is still a new risk to warn of. A cooldown only defers it to the next scoring.)
    last_risk = after.alerted.get("churn_risk")
    warned = last_risk is not None and after.last_purchase_at is not None and last_risk >= after.last_purchase_at
    by_heuristic, by_model = warning_scorers(config, model)
    scorers = [(score, limit)] if by_model else []
    if by_heuristic:
        scorers.append((heuristic, config.threshold))
    warning = None if warned or score is None or heuristic is None else next(
        ((s, t) for s, t in scorers if s is not None and s.probability >= t), None)
    if warning is not None:
        by, at_least = warning
        candidates.append(("churn_risk", "high" if by.probability >= at_least + 2 * (1 - at_least) / 3 else "medium",
                           f"churn probability {by.probability:.2f} reached the {at_least:.2f} threshold"))
        if after.tags.value_tier in HIGH_VALUE_TIERS:
            candidates.append(("high_value_at_risk", "high",
                               f"a {after.tags.value_tier} customer's churn probability is {by.probability:.2f}"))
    silent_since = inactivity_moment(after, config)
    if silent_since is not None and silent_since <= now and (previous_at is None or previous_at < silent_since) \
            and after.last_purchase_at == before.last_purchase_at:
        gap = typical_gap_days(after, config)
        candidates.append(("inactivity", "medium",
                           f"no purchase for {days_between(now, after.last_purchase_at):.0f} days, more than "
                           f"{config.inactivity_factor:g} x the usual {gap:.0f}-day gap"))
    old_segment, new_segment = before.tags.segment, after.tags.segment
    if old_segment in DOWNGRADE_FROM and new_segment in DOWNGRADE_TO:
        candidates.append(("segment_downgrade", "high" if after.tags.value_tier in HIGH_VALUE_TIERS else "medium",
                           f"segment moved from {old_segment} to {new_segment}"))
    if after.complaints > before.complaints and before.last_complaint_at is not None \
            and after.last_complaint_at is not None \
            and after.last_complaint_at - before.last_complaint_at <= timedelta(days=30):
        candidates.append(("complaint_spike", "high", "a second complaint within 30 days"))

    detector = after.activity_detector
    if (active_gap := _active_day_gap(before, after)) is not None:
        detector, dropped = page_hinkley(detector, math.log1p(active_gap))
        if dropped:
            candidates.append(("activity_drop", "medium",
                               f"active days are getting further apart (latest gap {active_gap:.0f} days)"))

    purchased_at = after.last_purchase_at if after.orders > before.orders else None
    outcomes, open_alerts = resolve_outcomes(after, now, purchased_at, config)
    holdout = bool(candidates) and in_holdout(after.customer_id, config.holdout_share)
    alerted = dict(after.alerted)
    alerts = []
    cooldown = timedelta(days=config.cooldown_days)
    for kind, severity, reason in candidates:
        last = alerted.get(kind)
        if last is not None and now - last < cooldown:
            continue
        alerted[kind] = now
        # a churn warning carries the scorer that raised it; the other kinds the served score
        behind, behind_limit = warning if warning is not None and kind in CHURN_WARNINGS else (score, limit)
        alerts.append(Alert(
            alert_id=f"{after.customer_id}:{kind}:{after.revision}", customer_id=after.customer_id, kind=kind,
            severity=severity, score=behind.probability if behind else None, threshold=behind_limit, reason=reason,
            explanation=tuple(Contribution(feature=f, contribution=c)
                              for f, c in (behind.explanation if behind else ())),
            event_time=now, model_version=behind.model_version if behind else HEURISTIC_VERSION,
            rules_version=after.tags.rules_version, segment=new_segment, value_tier=after.tags.value_tier,
            marketing_allowed=after.marketing_consent, holdout=holdout,
        ))
    if alerts:
        open_alerts = (*open_alerts, *((alert.alert_id, now, holdout) for alert in alerts))[-config.max_open_alerts:]
    labels, pending = resolve_labels(after, now, purchased_at, config)
    if heuristic is not None and days_between(now, after.last_purchase_at) < config.horizon_days:
        # (a customer already silent for H days has churned by definition: nothing to predict)
        pending = _with_prediction(pending, now, heuristic.probability, after, config, purchase)
    updated = after.model_copy(update={
        "churn_probability": p, "churn_model": score.model_version if score else None, "churn_threshold": limit,
        "churn_reasons": score.reasons() if score else None, "churn_as_of": now, "alerted": alerted,
        "pending": pending, "activity_detector": detector, "open_alerts": open_alerts,
    })
    return Assessment(updated, tuple(alerts), labels, outcomes)


# days ahead at which a model's score is projected, looking for its threshold crossing
