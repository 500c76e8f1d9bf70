"""Churn scores as of now, for readers. A stored score is as of the event time it was computed
at; the features it was computed from are stored beside it (``churn_inputs`` in the hash), and
a reader projects them through the silence since (:func:`stream.core.churn.projected`), adds
the purchase model's outlook at that moment and scores them with the scorer the workers use
now. So a silent customer's churn probability is read as risen, never stale
(``docs/churn-model.md``). Plain data in and out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from schemas import CustomerState
from stream.core.churn import (
    ChurnConfig,
    ChurnScore,
    Scorer,
    features,
    gap_of,
    heuristic_of,
    projected,
    vector_terms,
)

INPUT_DIGITS = 4


def stored_inputs(state: CustomerState, at: datetime | None, config: ChurnConfig) -> str | None:
    """The churn features at ``at``, as the hash keeps them: compact JSON. None before a first
    purchase."""
    if at is None or state.orders == 0 or state.last_purchase_at is None:
        return None
    vector = features(state, at, config)
    return json.dumps({name: round(value, INPUT_DIGITS) for name, value in vector.items()}, separators=(",", ":"))


def score_later(inputs: Mapping[str, float], ahead_days: float, config: ChurnConfig,
                model: Scorer | None) -> ChurnScore:
    """The score ``ahead_days`` after the stored ``inputs`` with no event in between, by the
    ready ``model``, else the heuristic.

    >>> inputs = {"recency_days": 10.0, "frequency": 1.0, "interval_mean_days": 0.0, "tenure_days": 10.0,
    ...           "activity_trend": 0.0, "complaints": 0.0, "refunds": 0.0, "recency_ratio": 10 / 45,
    ...           "silence_days": 10.0, "active_days": 1.0, "active_span_days": 0.0}
    >>> [round(score_later(inputs, ahead, ChurnConfig(), None).probability, 3) for ahead in (0, 35, 80)]
    [0.012, 0.262, 0.747]
    """
    vector = projected(inputs, max(0.0, ahead_days), gap_of(inputs, config))
    if model is not None and model.ready:
        return model.score(vector)
    return heuristic_of(vector_terms(vector))
