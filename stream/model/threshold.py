"""The model's own alert threshold, chosen on recent labelled prediction points so that it
warns, within the silence that followed each churned point, as many churners as the
heuristic does at its threshold (see ``stream/model/trainer.py``)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from schemas import ChurnLabel
from stream.core.churn import (
    FEATURES,
    MODEL_INPUTS,
    PROJECTION_DAYS,
    ChurnConfig,
    gap_of,
    projected,
    vector_terms,
    with_heuristic_inputs,
)
from stream.model.params import LOG_FEATURES, ModelParams

THRESHOLD_WINDOW = 1_500  # recent labelled prediction points the alert threshold is chosen on
THRESHOLD_MIN_POSITIVES = 30  # churned points needed before a threshold is chosen


@dataclass(frozen=True)
class Point:
    """A labelled prediction point as the threshold needs it: its features, whether the
    customer churned, and the days of silence that followed it (to the purchase that
    labelled it 0, or, for a churner, until the silence reached H days)."""

    vector: tuple[float, ...]  # in FEATURES order
    churned: bool
    window_days: float

    @classmethod
    def of(cls, label: ChurnLabel, horizon_days: float) -> Point:
        full = with_heuristic_inputs(label.features)
        vector = tuple(float(full.get(name, 0.0)) for name in FEATURES)
        if label.label:
            window = horizon_days - vector[FEATURES.index("recency_days")]
        else:
            window = (label.resolved_at - label.predicted_at).total_seconds() / 86_400
        return cls(vector, bool(label.label), max(0.0, window))


def in_time_reach(params: ModelParams, points: list[Point], horizon_days: float,
                  heuristic_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the highest model probability its projected features reach during the
    silence that followed it (the alert an upward crossing would raise in that time), and
    whether the heuristic's score reaches its threshold in the same time.

    The projection is ``stream.core.churn.projected`` over the ``PROJECTION_DAYS`` grid, vectorised."""
    index = {name: i for i, name in enumerate(FEATURES)}
    raw = np.array([p.vector for p in points], dtype=float)
    windows = np.array([p.window_days for p in points])
    heuristic = [_heuristic(p, horizon_days, heuristic_threshold) for p in points]
    gaps = np.array([gap for gap, _ in heuristic])
    grid = np.array((0.0, *PROJECTION_DAYS))
    ahead = grid[None, :]  # points x grid
    r0, t0 = raw[:, index["recency_days"], None], raw[:, index["tenure_days"], None]

    def scaled(name: str, values: np.ndarray) -> np.ndarray:
        x = np.log1p(np.maximum(0.0, values)) if name in LOG_FEATURES else values
        variance = params.variances.get(name, 0.0)
        return (x - params.means.get(name, 0.0)) / math.sqrt(variance) if variance else np.zeros_like(x)

    moving = {"recency_days": r0 + ahead, "recency_ratio": (r0 + ahead) / gaps[:, None],
              "tenure_days": t0 + ahead,
              "activity_trend": np.where(ahead < 7, raw[:, index["activity_trend"], None], 0.0)}
    # the features that do not move with the silence add one term per point, the others one per grid day
    still = np.full(len(points), params.intercept)
    for name in MODEL_INPUTS:
        if name not in moving:
            still += params.weights.get(name, 0.0) * scaled(name, raw[:, index[name]])
    logit = np.repeat(still[:, None], len(grid), axis=1)
    for name in MODEL_INPUTS:
        if name in moving:
            logit += params.weights.get(name, 0.0) * scaled(name, moving[name])
    inside = ahead < windows[:, None]
    inside[:, 0] = True  # the score at the point itself
    best = np.clip(np.where(inside, logit, -30.0), -30.0, 30.0).max(axis=1)  # the sigmoid is increasing
    reach = 1 / (1 + np.exp(-best))
    return reach, np.array([warns for _, warns in heuristic], dtype=bool)


@functools.lru_cache(maxsize=4 * THRESHOLD_WINDOW)
def _heuristic(point: Point, horizon_days: float, heuristic_threshold: float) -> tuple[float, bool]:
    """A point's usual gap between purchases, and whether the heuristic's score reaches its
    threshold during the silence that followed it (the heuristic only grows with silence: its
    highest score is at the end of the window). Neither depends on the model's weights, so a
    point's answer is kept while it stays in the window: every snapshot asks again for all
    of them, and this took most of a snapshot's time in the worker's event loop."""
    config = ChurnConfig(horizon_days=int(horizon_days), threshold=heuristic_threshold)
    vector = dict(zip(FEATURES, point.vector, strict=True))
    gap = gap_of(vector, config)
    target = math.log(heuristic_threshold / (1 - heuristic_threshold))
    return gap, sum(vector_terms(projected(vector, max(0.0, point.window_days - 1e-6), gap)).values()) >= target


def matched_threshold(params: ModelParams, points: list[Point], horizon_days: float,
                      heuristic_threshold: float, base_rate: float | None = None
                      ) -> tuple[float | None, dict[str, float]]:
    """The model's alert threshold: the highest that warns, within the silence that followed
    each churned point, as many churned points as the heuristic warns at its threshold.
    Returns it (None with too few churned points) and the recalls and precisions of each and
    of either warning (an alert on a point followed by a purchase is a false alarm). With
    ``base_rate``, the points' share of churned ones in the population they stand for, each
    class is weighted to it in the precisions (the points then hold a sample of each class,
    not the population's mix)."""
    churned = np.array([p.churned for p in points], dtype=bool)
    if int(churned.sum()) < THRESHOLD_MIN_POSITIVES:
        return None, {}
    reach, heuristic_warns = in_time_reach(params, points, horizon_days, heuristic_threshold)
    positives = int(churned.sum())
    recall = float((heuristic_warns & churned).sum()) / positives
    ranked = np.sort(reach[churned])[::-1]
    threshold = float(ranked[max(1, math.ceil(recall * positives - 1e-9)) - 1])
    model_warns = reach >= threshold

    weights = np.ones(len(points))
    if base_rate is not None and positives < len(points):
        weights = np.where(churned, base_rate / positives, (1 - base_rate) / (len(points) - positives))

    def precision(warns: np.ndarray) -> float:
        return round(float(weights[warns & churned].sum() / weights[warns].sum()), 4) if warns.any() else 0.0

    return threshold, {
        "alert_threshold": round(threshold, 4),
        "heuristic_recall": round(recall, 4),
        "model_recall": round(float((model_warns & churned).sum()) / positives, 4),
        "heuristic_precision": precision(heuristic_warns), "model_precision": precision(model_warns),
        # under warn_by="either" both warn: what the model's warnings add to the heuristic's
        "either_recall": round(float(((model_warns | heuristic_warns) & churned).sum()) / positives, 4),
        "either_precision": precision(model_warns | heuristic_warns),
    }
