"""Churn features, the transparent heuristic churn score, and when a score will cross the
alert threshold (the alerts themselves: ``stream/core/alerts.py``).

Pure functions of a customer's state and an event time. The heuristic score is what every
worker uses until an online model has learnt enough (``model_version`` says which produced
a score): the odds of churn grow with the customer's silence measured against their own
typical gap between purchases, and with complaints and refunds:

    logit p = 1.5 x ln(recency / typical gap) + 0.4 x complaints + 0.4 x refunds

so a customer silent for their usual gap scores 0.5 (with no complaints or refunds), one
silent for twice their usual gap about 0.74 (past the default 0.7 threshold at 1.76 gaps). Each term is reported as its
contribution, so every score carries its explanation. Because p only grows while a
customer is silent, the event time at which it will cross the alert threshold is known in
advance and becomes a time-driven boundary (see ``stream.core.tagging.next_boundary``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from schemas import CustomerState
from stream.core.purchase import DAY_SECONDS
from stream.core.purchase_outlook import PurchaseModel
from stream.core.windows import window

HEURISTIC_VERSION = "heuristic-1"
RECENCY_WEIGHT = 1.5
COMPLAINT_WEIGHT = 0.4
REFUND_WEIGHT = 0.4
MIN_TYPICAL_DAYS = 1.0
FEATURES = ("recency_days", "frequency", "monetary", "avg_order_value", "interval_mean_days",
            "interval_std_days", "recency_ratio", "activity_trend", "cart_abandonment", "complaints",
            "refunds", "tenure_days")
# The purchase model's view, kept with each label (absent until the purchase model is fitted) so
# the trainer measures it on the same labels as the heuristic and the learner.
PURCHASE_FEATURES = ("purchase_churn", "expected_orders")
# The online learner's inputs. Measured on CDNOW's delayed labels (docs/churn-model.md), the
# heuristic's recency_ratio and the purchase model's outlook each lowered the learner's ranking
# at the cut-off (log recency and log usual gap, both inputs, carry the ratio for a linear model).
MODEL_INPUTS = tuple(name for name in FEATURES if name != "recency_ratio")


@dataclass(frozen=True)
class ChurnConfig:
    """Alerting knobs (from ``Settings``): horizon H, threshold, inactivity factor k, cooldown."""

    horizon_days: int = 90
    threshold: float = 0.7
    inactivity_factor: float = 2.0
    cooldown_days: int = 30
    max_pending: int = 3  # open predictions per customer (each ~300 bytes of state)
    prediction_spacing_days: int = 30  # a new prediction point at most this often
    holdout_share: float = 0.0  # customers held out from interventions (stream/core/holdout.py)
    # alerts per customer awaiting their outcome (each ~90 bytes of state): six kinds, each at most
    # every 30 days (the default cooldown) over a 90-day horizon; beyond it the oldest is dropped
    max_open_alerts: int = 18

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError("threshold must be between 0 and 1 (exclusive)")


def typical_gap_days(state: CustomerState, config: ChurnConfig) -> float:
    """The customer's usual gap between purchases; half the churn horizon for one-time buyers.

    >>> typical_gap_days(CustomerState(customer_id="c", orders=1), ChurnConfig())
    45.0
    """
    return _usual_gap(state.interval_count >= 1, state.interval_mean_days, config)


def _usual_gap(has_interval: bool, interval_mean_days: float, config: ChurnConfig) -> float:
    return max(MIN_TYPICAL_DAYS, interval_mean_days) if has_interval else config.horizon_days / 2


def days_between(later: datetime, earlier: datetime | None) -> float:
    return 0.0 if earlier is None else max(0.0, (later - earlier).total_seconds() / 86_400)


def purchase_features(state: CustomerState, now: datetime, config: ChurnConfig,
                      purchase: PurchaseModel | None) -> dict[str, float]:
    """The purchase model's churn probability and expected orders within H days, at ``now``
    (none before a first purchase or a fitted model)."""
    first, last = state.first_purchase_at, state.last_purchase_at
    if purchase is None or state.orders <= 0 or first is None or last is None:
        return {}
    outlook = purchase.outlook(state.orders, state.purchase_days or state.orders, first.timestamp() / DAY_SECONDS,
                               last.timestamp() / DAY_SECONDS, state.monetary_cents / 100,
                               now.timestamp() / DAY_SECONDS, config.horizon_days)
    return {"purchase_churn": outlook.p_no_purchase, "expected_orders": outlook.expected_orders}


def features(state: CustomerState, now: datetime, config: ChurnConfig,
             purchase: PurchaseModel | None = None) -> dict[str, float]:
    """The feature vector at ``now`` (event time)."""
    recency = days_between(now, state.last_purchase_at)
    recent, month = (window(state.daily, state.weekly, now, d) for d in (7, 30))
    activity_7 = (recent.sessions + recent.clicks + recent.orders) / 7
    activity_30 = (month.sessions + month.clicks + month.orders) / 30
    return {
        "recency_days": recency,
        "frequency": float(state.orders),
        "monetary": state.monetary_cents / 100,
        "avg_order_value": state.monetary_cents / 100 / state.orders if state.orders else 0.0,
        "interval_mean_days": state.interval_mean_days,
        "interval_std_days": math.sqrt(state.interval_m2 / (state.interval_count - 1))
        if state.interval_count > 1 else 0.0,
        "recency_ratio": recency / typical_gap_days(state, config),
        # below 1: less active in the last week than over the month
        "activity_trend": activity_7 / activity_30 if activity_30 else 0.0,
        "cart_abandonment": 1.0 if state.funnel_stage in ("cart", "checkout") else 0.0,
        "complaints": float(state.complaints),
        "refunds": float(state.refunds),
        "tenure_days": days_between(now, state.first_seen_at),
        **purchase_features(state, now, config, purchase),
    }


@dataclass(frozen=True)
class ChurnScore:
    probability: float
    model_version: str
    explanation: tuple[tuple[str, float], ...] = field(default=())  # (feature, contribution), largest first

    def reasons(self, top: int = 3) -> str:
        """
        >>> ChurnScore(0.8, "h", (("recency_ratio", 1.7), ("complaints", 0.4))).reasons()
        'recency_ratio +1.70, complaints +0.40'
        """
        return ", ".join(f"{name} {value:+.2f}" for name, value in self.explanation[:top])


def risk_band(probability: float | None, threshold: float) -> str | None:
    """``high`` at or above the alert threshold, ``medium`` from half of it, else ``low``.

    >>> [risk_band(p, 0.7) for p in (None, 0.1, 0.4, 0.7)]
    [None, 'low', 'medium', 'high']
    """
    if probability is None:
        return None
    return "high" if probability >= threshold else "medium" if probability >= threshold / 2 else "low"


def heuristic_terms(recency_ratio: float, complaints: float, refunds: float) -> dict[str, float]:
    """The heuristic's logit, term by term (its explanation).

    >>> round(sum(heuristic_terms(1.0, 1, 0).values()), 2)
    0.4
    """
    return {"recency_ratio": RECENCY_WEIGHT * math.log(max(recency_ratio, 1e-6)),
            "complaints": COMPLAINT_WEIGHT * complaints,
            "refunds": REFUND_WEIGHT * refunds}


def heuristic_score(state: CustomerState, now: datetime, config: ChurnConfig) -> ChurnScore | None:
    """None before the first purchase (there is nothing to churn from)."""
    if state.orders == 0 or state.last_purchase_at is None:
        return None
    return heuristic_of(heuristic_terms(days_between(now, state.last_purchase_at) / typical_gap_days(state, config),
                                        state.complaints, state.refunds))


def heuristic_of(terms: Mapping[str, float]) -> ChurnScore:
    """The heuristic's score and explanation from its terms.

    >>> heuristic_of(heuristic_terms(1.0, 0, 0)).probability
    0.5
    """
    logit = sum(terms.values())
    probability = 1 / (1 + math.exp(-max(-30.0, min(30.0, logit))))
    explanation = tuple(sorted(((k, round(v, 4)) for k, v in terms.items() if v), key=lambda kv: -kv[1]))
    return ChurnScore(probability, HEURISTIC_VERSION, explanation)


def threshold_crossing(state: CustomerState, now: datetime, config: ChurnConfig) -> datetime | None:
    """When the heuristic score will reach the threshold with no further event (None if it
    already has, or the customer never purchased)."""
    if state.orders == 0 or state.last_purchase_at is None:
        return None
    others = COMPLAINT_WEIGHT * state.complaints + REFUND_WEIGHT * state.refunds
    target = math.log(config.threshold / (1 - config.threshold))
    ratio = math.exp((target - others) / RECENCY_WEIGHT)
    moment = state.last_purchase_at + timedelta(days=ratio * typical_gap_days(state, config))
    moment += timedelta(milliseconds=1)  # past the crossing, beyond rounding: the score has reached it
    return moment if moment > now else None


def inactivity_moment(state: CustomerState, config: ChurnConfig) -> datetime | None:
    """When the customer's silence passes k x their typical gap."""
    if state.orders == 0 or state.last_purchase_at is None:
        return None
    return state.last_purchase_at + timedelta(days=config.inactivity_factor * typical_gap_days(state, config),
                                              microseconds=1)


class Scorer(Protocol):
    """A published online model (see ``stream.model.ModelParams``)."""

    @property
    def ready(self) -> bool: ...

    @property
    def threshold(self) -> float | None:
        """Its own alert threshold, chosen on labels (None: the configured one)."""
        ...

    def score(self, features: Mapping[str, float]) -> ChurnScore: ...

    def probability(self, features: Mapping[str, float]) -> float:
        """``score(features).probability``, without the explanation."""
        ...


def alert_threshold(config: ChurnConfig, model: Scorer | None) -> float:
    """The threshold a churn_risk alert needs: the ready model's own (its probabilities are
    calibrated to the base rate, so the heuristic's would silence it), else the configured one.

    >>> alert_threshold(ChurnConfig(threshold=0.7), None)
    0.7
    """
    if model is not None and model.ready and model.threshold is not None:
        return model.threshold
    return config.threshold


PROJECTION_DAYS = (*range(1, 15), *range(16, 61, 2), *range(63, 181, 3))


def projected(base: Mapping[str, float], ahead: float, gap: float) -> dict[str, float]:
    """The features ``ahead`` days later with no event: silence and tenure grow, and the
    last week's activity lapses after 7 days."""
    recency = base["recency_days"] + ahead
    return {**base, "recency_days": recency, "recency_ratio": recency / gap,
            "tenure_days": base["tenure_days"] + ahead,
            "activity_trend": base["activity_trend"] if ahead < 7 else 0.0}


def gap_of(vector: Mapping[str, float], config: ChurnConfig) -> float:
    """``typical_gap_days`` recovered from a feature vector (as kept with a label).

    >>> gap_of({"frequency": 1.0, "interval_mean_days": 0.0}, ChurnConfig())
    45.0
    """
    return _usual_gap(vector["frequency"] >= 2, vector["interval_mean_days"], config)


def model_crossing(state: CustomerState, now: datetime, config: ChurnConfig, model: Scorer) -> datetime | None:
    """When the model's score would reach the threshold with no further event: the features
    projected to increasing days ahead (:func:`projected`), up to twice the horizon, searched by
    bisection over ``PROJECTION_DAYS``: a silent customer's score does not fall as the silence
    grows (the heuristic's provably; the learner's while it weighs silence as risk), so about
    eight scorings find the first crossing day of the grid. None if it already has, or will not
    within that span."""
    if state.orders == 0 or state.last_purchase_at is None:
        return None
    limit = alert_threshold(config, model)
    base, gap = features(state, now, config), typical_gap_days(state, config)

    def crossed(ahead: float) -> bool:
        return model.probability(projected(base, ahead, gap)) >= limit

    if crossed(0):
        return None
    grid = [ahead for ahead in PROJECTION_DAYS if ahead <= 2 * config.horizon_days]
    if not grid or not crossed(grid[-1]):
        return None
    low, high = -1, len(grid) - 1  # grid[high] has crossed; grid[low] (or now) has not
    while high - low > 1:
        middle = (low + high) // 2
        if crossed(grid[middle]):
            high = middle
        else:
            low = middle
    return now + timedelta(days=grid[high])


def churn_boundary(state: CustomerState, now: datetime, config: ChurnConfig,
                   model: Scorer | None = None) -> datetime | None:
    """The next event time at which a score crosses its threshold (the heuristic's, exactly;
    and the model's, projected, once it is ready: either warns, see
    :func:`stream.core.alerts.assess`), silence becomes inactivity, or an open prediction's
    or alert's horizon ends (its label becomes 1, its outcome "not converted")."""
    horizon = timedelta(days=config.horizon_days)
    expiries = [predicted_at + horizon for predicted_at, _, _ in state.pending]
    expiries += [alerted_at + horizon for _, alerted_at, _ in state.open_alerts]
    crossings = [threshold_crossing(state, now, config)]
    if model is not None and model.ready:
        crossings.append(model_crossing(state, now, config, model))
    # a churn_risk of this silence deferred by the cooldown is due when the cooldown ends
    last_risk = state.alerted.get("churn_risk")
    deferred = last_risk + timedelta(days=config.cooldown_days) \
        if last_risk is not None and state.last_purchase_at is not None and last_risk < state.last_purchase_at else None
    candidates = (*crossings, inactivity_moment(state, config), deferred, *expiries)
    moments = [m for m in candidates if m is not None and m > now]
    return min(moments) if moments else None
