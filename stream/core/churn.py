"""Churn features, the transparent heuristic churn score, and when a score will cross the
alert threshold (the alerts themselves: ``stream/core/alerts.py``).

Pure functions of a customer's state and an event time. The heuristic score is what every
worker uses until an online model has learnt enough (``model_version`` says which produced
a score). It is the odds that a customer silent for ``s`` days (since their last event of any
kind) has left, against the chance that an active customer stays silent that long at their own
pace of activity:

    odds(left | silent s days) = (e^(mu s) - 1) x ((alpha + t + s) / (alpha + t))^(r + n)

``n`` is the customer's days with any event over ``t`` days from their first to their last
event; their pace of active days is uncertain, Gamma(r + n, alpha + t) with the prior
Gamma(r, alpha) (one active day every ``alpha / r`` = 15 days, with the weight of 30 days of
observation), so the second factor is 1 / P(an active customer at that pace stays silent for
``s`` days); the first is the odds of having left in ``s`` days at a base hazard ``mu``. Then

    logit p = ln odds + 0.4 x complaints + 0.4 x refunds

With no complaint or refund, a customer active every day of a month reaches p 0.7 after 12
days of silence, one active every week for seven weeks after 51, one seen on a single day
after 84 (docs/churn-model.md: how the prior and the hazard were chosen, and what they give).
Each term is reported as its contribution, so every score carries its explanation. Because p
only grows while a customer is silent, the event time at which it will cross the alert threshold is known in advance and
becomes a time-driven boundary (see ``stream.core.tagging.next_boundary``).
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

HEURISTIC_VERSION = "heuristic-2"
# The silence term's prior pace of activity, Gamma(r, alpha): r active days in alpha days, and its
# base hazard of leaving (per day). Chosen on generated populations (seeds 1, 2, 3, 11; checked on
# seed 7 and on 1,000 customers) for in-time recall and precision at the default 0.7 threshold.
PRIOR_ACTIVE_DAYS = 2.0
PRIOR_SPAN_DAYS = 30.0
BASE_HAZARD_PER_DAY = 0.0005
MIN_SILENCE_DAYS = 1e-6
COMPLAINT_WEIGHT = 0.4
REFUND_WEIGHT = 0.4
MIN_TYPICAL_DAYS = 1.0
FEATURES = ("recency_days", "frequency", "monetary", "avg_order_value", "interval_mean_days",
            "interval_std_days", "recency_ratio", "activity_trend", "cart_abandonment", "complaints",
            "refunds", "tenure_days", "silence_days", "active_days", "active_span_days")
# The heuristic's own inputs: silence since the last event of any kind, days with any event, and
# the span from the first to the last event. Not inputs of the learner (below).
HEURISTIC_INPUTS = ("silence_days", "active_days", "active_span_days")
# The purchase model's view, kept with each label (absent until the purchase model is fitted) so
# the trainer measures it on the same labels as the heuristic and the learner.
PURCHASE_FEATURES = ("purchase_churn", "expected_orders")
# The online learner's inputs. Measured on CDNOW's delayed labels (docs/churn-model.md), the
# heuristic's recency_ratio and the purchase model's outlook each lowered the learner's ranking
# at the cut-off (log recency and log usual gap, both inputs, carry the ratio for a linear model).
MODEL_INPUTS = tuple(name for name in FEATURES if name != "recency_ratio" and name not in HEURISTIC_INPUTS)


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
    # while a model serves: "either" it or the heuristic warns (at its own threshold), or only the "served" one
    warn_by: str = "either"

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError("threshold must be between 0 and 1 (exclusive)")
        if self.warn_by not in ("either", "served"):
            raise ValueError("warn_by must be either or served")


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
    silence = days_between(now, state.last_event_at)
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
        "silence_days": silence,
        **dict(zip(("active_days", "active_span_days"), _activity(state), strict=True)),
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


def silence_log_odds(silence_days: float, active_days: float, span_days: float) -> float:
    """ln odds that a customer silent for ``silence_days`` has left (see the module docstring):
    the longer the silence against their own pace, the higher; it only grows with silence.

    >>> [round(silence_log_odds(s, 30, 30), 2) for s in (1, 5, 10, 15)]  # active every day
    [-7.07, -3.43, -0.36, 2.25]
    >>> silence_log_odds(40, 2, 30) < silence_log_odds(40, 5, 30)  # the same silence, a busier customer
    True
    """
    s = max(MIN_SILENCE_DAYS, silence_days)
    leave = math.log(math.expm1(BASE_HAZARD_PER_DAY * s))
    observed = PRIOR_SPAN_DAYS + max(0.0, span_days)
    quiet = (PRIOR_ACTIVE_DAYS + max(0.0, active_days)) * math.log1p(s / observed)
    return leave + quiet


def heuristic_terms(silence_days: float, active_days: float, span_days: float,
                    complaints: float, refunds: float) -> dict[str, float]:
    """The heuristic's logit, term by term (its explanation).

    >>> terms = heuristic_terms(10, 30, 30, 1, 0)
    >>> sorted(terms), round(sum(terms.values()), 2)
    (['complaints', 'refunds', 'silence'], 0.04)
    """
    return {"silence": silence_log_odds(silence_days, active_days, span_days),
            "complaints": COMPLAINT_WEIGHT * complaints,
            "refunds": REFUND_WEIGHT * refunds}


def with_heuristic_inputs(vector: Mapping[str, float]) -> dict[str, float]:
    """The vector with the heuristic's own inputs; one from before them (a label or a hash
    written by an earlier version) reads its silence as the recency, its active days as the
    orders, and its span as the tenure less the silence.

    >>> with_heuristic_inputs({"recency_days": 10, "frequency": 3, "tenure_days": 40})["active_span_days"]
    30
    """
    if all(name in vector for name in HEURISTIC_INPUTS):
        return dict(vector)
    silence = vector.get("recency_days", 0.0)
    return {**vector, "silence_days": silence, "active_days": vector.get("frequency", 0.0),
            "active_span_days": max(0.0, vector.get("tenure_days", 0.0) - silence)}


def vector_terms(vector: Mapping[str, float]) -> dict[str, float]:
    """The heuristic's terms from a feature vector (see :func:`with_heuristic_inputs`).

    >>> round(sum(vector_terms({"recency_days": 10, "frequency": 30, "tenure_days": 40,
    ...                         "complaints": 1, "refunds": 0}).values()), 2)
    0.04
    """
    full = with_heuristic_inputs(vector)
    return heuristic_terms(full["silence_days"], full["active_days"], full["active_span_days"],
                           full.get("complaints", 0.0), full.get("refunds", 0.0))


def heuristic_score(state: CustomerState, now: datetime, config: ChurnConfig) -> ChurnScore | None:
    """None before the first purchase (there is nothing to churn from)."""
    if state.orders == 0 or state.last_purchase_at is None:
        return None
    active_days, span = _activity(state)
    return heuristic_of(heuristic_terms(days_between(now, state.last_event_at), active_days, span,
                                        state.complaints, state.refunds))


def active_day_count(state: CustomerState) -> int:
    """Days with any event; a state from before active days counts its purchase days (a lower bound)."""
    return state.active_days or state.purchase_days or state.orders


def _activity(state: CustomerState) -> tuple[float, float]:
    """The heuristic's pace inputs: active days, and days from the first to the last event."""
    span = days_between(state.last_event_at, state.first_seen_at) if state.last_event_at is not None else 0.0
    return float(active_day_count(state)), span


def heuristic_of(terms: Mapping[str, float]) -> ChurnScore:
    """The heuristic's score and explanation from its terms.

    >>> round(heuristic_of(heuristic_terms(12.3, 30, 30, 0, 0)).probability, 2)
    0.71
    """
    logit = sum(terms.values())
    probability = 1 / (1 + math.exp(-max(-30.0, min(30.0, logit))))
    explanation = tuple(sorted(((k, round(v, 4)) for k, v in terms.items() if v), key=lambda kv: -kv[1]))
    return ChurnScore(probability, HEURISTIC_VERSION, explanation)


def silence_to_reach(target_log_odds: float, active_days: float, span_days: float) -> float:
    """The silence (days) at which :func:`silence_log_odds` reaches ``target_log_odds``: the
    function is increasing and concave in the silence, so Newton's method from below stays
    below the root and converges to it; a few milliseconds are added so that the score there
    has reached the target.

    >>> s = silence_to_reach(math.log(0.7 / 0.3), 4, 30)
    >>> silence_log_odds(s, 4, 30) >= math.log(0.7 / 0.3) > silence_log_odds(s - 1e-6, 4, 30)
    True
    """
    observed = PRIOR_SPAN_DAYS + max(0.0, span_days)
    weight = PRIOR_ACTIVE_DAYS + max(0.0, active_days)
    s = MIN_SILENCE_DAYS
    for _ in range(100):
        gap = silence_log_odds(s, active_days, span_days) - target_log_odds
        if gap >= 0:
            break
        slope = BASE_HAZARD_PER_DAY / -math.expm1(-BASE_HAZARD_PER_DAY * s) + weight / (observed + s)
        step = -gap / slope
        s += step
        if step < 1e-9:
            break
    for margin in (1e-7, 1e-5, 1e-3):  # ~10 ms, then more if rounding still falls short
        if silence_log_odds(s + margin, active_days, span_days) >= target_log_odds:
            return s + margin
    return s + 1e-2


def threshold_crossing(state: CustomerState, now: datetime, config: ChurnConfig) -> datetime | None:
    """When the heuristic score will reach the threshold with no further event (None if it
    already has, or the customer never purchased)."""
    if state.orders == 0 or state.last_purchase_at is None or state.last_event_at is None:
        return None
    others = COMPLAINT_WEIGHT * state.complaints + REFUND_WEIGHT * state.refunds
    target = math.log(config.threshold / (1 - config.threshold)) - others
    active_days, span = _activity(state)
    moment = state.last_event_at + timedelta(days=silence_to_reach(target, active_days, span))
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

    @property
    def adds_warnings(self) -> bool:
        """With ``warn_by="either"``: whether its warnings join the heuristic's (measured on
        recent labels: the warnings of either were at least as precise as the heuristic's alone)."""
        ...


def warning_scorers(config: ChurnConfig, model: Scorer | None) -> tuple[bool, bool]:
    """Which scorers raise ``churn_risk``: (the heuristic, the model). The heuristic alone until
    a model is ready; then the model, with the heuristic too under ``warn_by="either"`` (no
    warning the heuristic would give is lost by the switch), where the model's own warnings
    are kept only while they do not cost precision (:attr:`Scorer.adds_warnings`).

    >>> warning_scorers(ChurnConfig(), None)
    (True, False)
    """
    if model is None or not model.ready:
        return True, False
    if config.warn_by == "served":
        return False, True
    return True, model.adds_warnings


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
    """The features ``ahead`` days later with no event: recency, silence and tenure grow, and
    the last week's activity lapses after 7 days."""
    recency = base["recency_days"] + ahead
    moved = {**base, "recency_days": recency, "recency_ratio": recency / gap,
             "tenure_days": base["tenure_days"] + ahead,
             "activity_trend": base["activity_trend"] if ahead < 7 else 0.0}
    if "silence_days" in base:
        moved["silence_days"] = base["silence_days"] + ahead
    return moved


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
    by_heuristic, by_model = warning_scorers(config, model)
    crossings = [threshold_crossing(state, now, config)] if by_heuristic else []
    if by_model and model is not None:
        crossings.append(model_crossing(state, now, config, model))
    # a churn_risk of this silence deferred by the cooldown is due when the cooldown ends
    last_risk = state.alerted.get("churn_risk")
    deferred = last_risk + timedelta(days=config.cooldown_days) \
        if last_risk is not None and state.last_purchase_at is not None and last_risk < state.last_purchase_at else None
    candidates = (*crossings, inactivity_moment(state, config), deferred, *expiries)
    moments = [m for m in candidates if m is not None and m > now]
    return min(moments) if moments else None
