"""Churn scores read as of now: a reader projects the features stored in the hash through the
silence since and scores them as the workers do, so it reads the score a worker would compute
at that moment, never the stale one written at the customer's last event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState, parse_event
from stream.core.alerts import assess
from stream.core.churn import HEURISTIC_VERSION, ChurnConfig, features, heuristic_score, risk_band
from stream.core.fold import apply_event, to_profile
from stream.core.purchase import DAY_SECONDS, BgNbd, GammaGamma
from stream.core.purchase_outlook import PurchaseModel
from stream.model import ModelParams
from stream.sinks.base import ReadModels, as_of_now, profile_fields

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CONFIG = ChurnConfig()
BGNBD, SPEND = BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44)
# a ready learner stacked on the purchase model (weights as the trainer publishes them)
LEARNER = ModelParams(version=7, ready=True, means={"recency_days": 3.0, "frequency": 1.0, "tenure_days": 4.0,
                                                    "purchase_churn": 0.7, "expected_orders": 0.3,
                                                    "activity_trend": 0.5, "complaints": 0.1},
                      variances={"recency_days": 1.5, "frequency": 0.4, "tenure_days": 1.0, "purchase_churn": 0.04,
                                 "expected_orders": 0.05, "activity_trend": 0.3, "complaints": 0.1},
                      weights={"recency_days": 0.6, "frequency": -0.3, "tenure_days": -0.2, "purchase_churn": 0.5,
                               "expected_orders": -0.4, "activity_trend": -0.2, "complaints": 0.3},
                      intercept=-1.0, labels_seen=5000, threshold=0.35)


def _customer(gap_days: int, orders: int, complaints: int) -> CustomerState:
    state = CustomerState(customer_id="c")
    events = [{"type": "purchase", "event_id": f"p{n}", "customer_id": "c", "order_id": f"o{n}",
               "event_time": (T0 + timedelta(days=gap_days * n)).isoformat(), "total": f"{20 + 7 * n}.00"}
              for n in range(orders)]
    events += [{"type": "support_contact", "event_id": f"s{n}", "customer_id": "c", "kind": "complaint",
                "event_time": (T0 + timedelta(days=gap_days * n, hours=1)).isoformat()} for n in range(complaints)]
    for raw in sorted(events, key=lambda e: e["event_time"]):
        state = apply_event(state, parse_event(json.dumps(raw)))[0]
    return state


def _model(at: datetime) -> PurchaseModel:
    return PurchaseModel(BGNBD, SPEND, as_of_day=int(at.timestamp() // DAY_SECONDS), customers=1000,
                         repeat_buyers=300, mean_value=40.0)


def _written(state: CustomerState, model: ModelParams | None) -> tuple[dict[str, str], datetime]:
    """The hash as the worker writes it at the customer's newest event."""
    at = state.last_event_at
    assert at is not None
    assessed = assess(state, state, at, CONFIG, model, _model(at)).state
    return profile_fields(to_profile(assessed, at, CONFIG, _model(at))), at


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(0, 2), st.integers(0, 400))
def test_a_heuristic_score_read_later_is_the_score_at_that_moment(gap: int, orders: int, complaints: int,
                                                                  silence: int) -> None:
    state = _customer(gap, orders, complaints)
    stored, at = _written(state, None)
    read = as_of_now(stored, ReadModels(_model(at + timedelta(days=silence)), 90, None, CONFIG))
    now = datetime.fromisoformat(read["churn_as_of"])
    expected = heuristic_score(state, now, CONFIG)
    assert expected is not None
    assert float(read["churn_probability"]) == pytest.approx(expected.probability, abs=2e-4)
    assert read["churn_risk"] == risk_band(expected.probability, CONFIG.threshold)
    assert read["model_version"] == HEURISTIC_VERSION
    if silence >= 1:  # a silent customer's score has moved on, and says when it is for
        assert now > at and float(read["churn_probability"]) >= float(stored["churn_probability"])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(0, 2), st.integers(8, 400))
def test_a_learners_score_read_later_is_the_score_at_that_moment(gap: int, orders: int, complaints: int,
                                                                 silence: int) -> None:
    # (from 8 days on: the projection lets the last week's activity lapse a week after the stored
    # moment, the worker's daily windows at the day boundary after the activity)
    state = _customer(gap, orders, complaints)
    stored, at = _written(state, LEARNER)
    later = _model(at + timedelta(days=silence))
    read = as_of_now(stored, ReadModels(later, 90, LEARNER, CONFIG))
    now = datetime.fromisoformat(read["churn_as_of"])
    expected = LEARNER.score(features(state, now, CONFIG, later))
    assert float(read["churn_probability"]) == pytest.approx(expected.probability, abs=1e-3)
    assert read["model_version"] == "logreg-v7" and read["churn_risk"] == risk_band(expected.probability, 0.35)
    assert read["churn_reasons"].split(",")[0].split()[0] == expected.explanation[0][0]


def test_without_a_published_scorer_the_stored_score_is_left_as_written() -> None:
    state = _customer(10, 3, 0)
    stored, at = _written(state, None)
    read = as_of_now(stored, ReadModels(_model(at + timedelta(days=60)), 90, None, None))
    assert read["churn_probability"] == stored["churn_probability"] and read["churn_as_of"] == stored["churn_as_of"]
    assert float(read["purchase_churn_probability"]) > float(stored["purchase_churn_probability"])
