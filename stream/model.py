"""The online churn model, its progressive validation, drift detectors and snapshots.

**Model.** A River pipeline ``StandardScaler | LogisticRegression`` over the churn
features (skewed ones log-transformed). Chosen because it learns one example at a time in
microseconds, its snapshot is a few hundred bytes (so it can be published often), and it is
explainable exactly: each feature contributes weight x scaled value to the logit. A
Hoeffding adaptive tree would capture interactions but explains by a path and snapshots
grow with the tree; forests are too large to publish often.

**One trainer, many scorers.** Only the trainer holds the River objects. It publishes
versioned :class:`ModelParams` (scaler means and variances, weights, intercept), plain
numbers that every worker scores with (:meth:`ModelParams.score`, equal to River's own
prediction), plus the pickled trainer state for its own restart. A pickle is only ever
loaded by the trainer, from our compacted snapshot topic, after checking its checksum and
River version.

**Progressive validation.** Each delayed label is first predicted, then learnt: ROC AUC
and log-loss on examples the model had not seen (and the heuristic's AUC on the same
labels, for comparison).

**Champion and challenger.** Workers switch from the heuristic to the model only when it
has learnt ``min_labels`` labels and its progressive ROC AUC beats the heuristic's on the
same labels.

**The model's alert threshold.** A logistic model's probabilities are calibrated to the
base rate of the prediction points (about 10% churn), so the heuristic's threshold (0.7)
would almost never be crossed and the switch would silence the warnings. The trainer
therefore chooses the model's own threshold on the last ``THRESHOLD_WINDOW`` labelled
points, judged the way warnings are: each point's features are projected through the
silence that followed it (to the purchase that labelled it 0, or to H days of silence for
a churner), and a point is *warned* if the score reaches the threshold in that time. The
threshold is the highest that warns as many churned points as the heuristic warns at its
threshold in the same time; warned points followed by a purchase are false alarms. Both
recalls and precisions are published with the threshold.

**Drift.** ADWIN on the model's absolute error: on drift, a ``model_drift`` monitoring
record, and the documented response: the workers fall back to the heuristic score until
the model has learnt ``min_labels`` more labels (it keeps learning throughout). ADWIN on
the churn base rate of the labels: a ``population_drift`` record when it shifts.
"""

from __future__ import annotations

import base64
import hashlib
import math
import pickle
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import river
from river import compose, drift, linear_model, metrics, optim, preprocessing

from schemas import ChurnLabel
from stream.core.churn import FEATURES, PROJECTION_DAYS, ChurnConfig, ChurnScore, gap_of, heuristic_terms

LOG_FEATURES = frozenset({"recency_days", "frequency", "monetary", "avg_order_value", "interval_mean_days",
                          "interval_std_days", "recency_ratio", "complaints", "refunds", "tenure_days"})
MODEL_PREFIX = "logreg"


def transform(features: Mapping[str, float]) -> dict[str, float]:
    """The model's inputs: log1p of the skewed features, the others as they are.

    >>> transform({"frequency": 0.0, "activity_trend": 0.5})
    {'frequency': 0.0, 'activity_trend': 0.5}
    """
    return {name: math.log1p(max(0.0, value)) if name in LOG_FEATURES else float(value)
            for name, value in features.items() if name in FEATURES}


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
        vector = tuple(float(label.features.get(name, 0.0)) for name in FEATURES)
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
    config = ChurnConfig(horizon_days=int(horizon_days), threshold=heuristic_threshold)
    index = {name: i for i, name in enumerate(FEATURES)}
    raw = np.array([p.vector for p in points], dtype=float)
    windows = np.array([p.window_days for p in points])
    gaps = np.array([gap_of(dict(zip(FEATURES, p.vector, strict=True)), config) for p in points])
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
    logit = np.full((len(points), len(grid)), params.intercept)
    for name in FEATURES:
        values = moving[name] if name in moving else np.broadcast_to(raw[:, index[name], None], logit.shape)
        logit = logit + params.weights.get(name, 0.0) * scaled(name, values)
    inside = ahead < windows[:, None]
    inside[:, 0] = True  # the score at the point itself
    best = np.clip(np.where(inside, logit, -30.0), -30.0, 30.0).max(axis=1)  # the sigmoid is increasing
    reach = 1 / (1 + np.exp(-best))
    # the heuristic only grows with silence: its highest score is at the end of the window
    target = math.log(heuristic_threshold / (1 - heuristic_threshold))
    heuristic_warns = np.array([
        sum(heuristic_terms((p.vector[index["recency_days"]] + max(0.0, p.window_days - 1e-6)) / gap,
                            p.vector[index["complaints"]], p.vector[index["refunds"]]).values()) >= target
        for p, gap in zip(points, gaps, strict=True)], dtype=bool)
    return reach, heuristic_warns


def matched_threshold(params: ModelParams, points: list[Point], horizon_days: float,
                      heuristic_threshold: float) -> tuple[float | None, dict[str, float]]:
    """The model's alert threshold: the highest that warns, within the silence that followed
    each churned point, as many churned points as the heuristic warns at its threshold.
    Returns it (None with too few churned points) and both recalls and precisions (an alert
    on a point followed by a purchase is a false alarm)."""
    churned = np.array([p.churned for p in points], dtype=bool)
    if int(churned.sum()) < THRESHOLD_MIN_POSITIVES:
        return None, {}
    reach, heuristic_warns = in_time_reach(params, points, horizon_days, heuristic_threshold)
    positives = int(churned.sum())
    recall = float((heuristic_warns & churned).sum()) / positives
    ranked = np.sort(reach[churned])[::-1]
    threshold = float(ranked[max(1, math.ceil(recall * positives - 1e-9)) - 1])
    model_warns = reach >= threshold

    def precision(warns: np.ndarray) -> float:
        return round(float((warns & churned).sum()) / float(warns.sum()), 4) if warns.any() else 0.0

    return threshold, {
        "alert_threshold": round(threshold, 4),
        "heuristic_recall": round(recall, 4),
        "model_recall": round(float((model_warns & churned).sum()) / positives, 4),
        "heuristic_precision": precision(heuristic_warns), "model_precision": precision(model_warns),
    }


@dataclass(frozen=True)
class ModelParams:
    """What scorers need: plain numbers, safe to publish and to load anywhere."""

    version: int
    ready: bool
    means: dict[str, float]
    variances: dict[str, float]
    weights: dict[str, float]
    intercept: float
    labels_seen: int
    river_version: str = river.__version__
    metrics: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None  # the model's own alert threshold (see the module docstring)

    @property
    def model_version(self) -> str:
        return f"{MODEL_PREFIX}-v{self.version}"

    def score(self, features: Mapping[str, float]) -> ChurnScore:
        x = transform(features)
        contributions = {}
        for name, value in x.items():
            variance = self.variances.get(name, 0.0)
            scaled = (value - self.means.get(name, 0.0)) / math.sqrt(variance) if variance else 0.0
            contributions[name] = self.weights.get(name, 0.0) * scaled
        logit = self.intercept + sum(contributions.values())
        probability = 1 / (1 + math.exp(-max(-30.0, min(30.0, logit))))
        explanation = tuple(sorted(((k, round(v, 4)) for k, v in contributions.items() if v),
                                   key=lambda kv: -abs(kv[1])))
        return ChurnScore(probability, self.model_version, explanation)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "ready": self.ready, "means": self.means, "variances": self.variances,
                "weights": self.weights, "intercept": self.intercept, "labels_seen": self.labels_seen,
                "river_version": self.river_version, "metrics": self.metrics, "threshold": self.threshold}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelParams:
        return cls(version=int(data["version"]), ready=bool(data["ready"]), means=dict(data["means"]),
                   variances=dict(data["variances"]), weights=dict(data["weights"]),
                   intercept=float(data["intercept"]), labels_seen=int(data["labels_seen"]),
                   river_version=str(data["river_version"]), metrics=dict(data.get("metrics", {})),
                   threshold=None if data.get("threshold") is None else float(data["threshold"]))


@dataclass(frozen=True)
class Monitoring:
    """A record for ``pulse.monitoring``."""

    kind: str
    at: datetime
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at.isoformat(), **self.details}


class SnapshotError(ValueError):
    """A snapshot that must not be loaded (bad checksum, other River version)."""


class Trainer:
    """The single online learner (see the module docstring)."""

    def __init__(self, min_labels: int = 500, learning_rate: float = 0.02, seen_ids: int = 5_000,
                 heuristic_threshold: float = 0.7, horizon_days: float = 90) -> None:
        self.pipeline = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=1e-4),
        )
        self.auc = metrics.ROCAUC()
        self.log_loss = metrics.LogLoss()
        self.heuristic_auc = metrics.ROCAUC()
        self.error_drift = drift.ADWIN(delta=0.002)
        self.base_rate = drift.ADWIN(delta=0.002)
        self.min_labels = min_labels
        self.labels_seen = 0
        self.positives = 0
        self.relearn_until = min_labels  # scorers use the heuristic until this many labels
        self.version = 0
        self.offset = -1  # the last churn-labels offset learnt
        self._recent_ids: deque[str] = deque(maxlen=seen_ids)
        self._recent_set: set[str] = set()
        self.heuristic_threshold = heuristic_threshold
        self.horizon_days = horizon_days
        self.recent_points: deque[Point] = deque(maxlen=THRESHOLD_WINDOW)
        self._matched: tuple[int, tuple[float | None, dict[str, float]]] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # snapshots pickled before the model had its own threshold
        state.setdefault("heuristic_threshold", 0.7)
        state.setdefault("horizon_days", 90)
        state.setdefault("recent_points", deque(maxlen=THRESHOLD_WINDOW))
        state["_matched"] = None
        self.__dict__.update(state)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_matched": None}

    def learn(self, label: ChurnLabel, offset: int | None = None) -> list[Monitoring]:
        """Predict, score the prediction, then learn; returns monitoring records raised."""
        if label.label_id in self._recent_set or (offset is not None and offset <= self.offset):
            return []  # a redelivery (same offset), or the same label sent again after a profile retry
        self._remember(label.label_id)
        if offset is not None:
            self.offset = offset
        x, y = transform(label.features), bool(label.label)
        p = self.pipeline.predict_proba_one(x).get(True, 0.5)
        self.auc.update(y, p)
        self.log_loss.update(y, p)
        if label.score is not None:
            self.heuristic_auc.update(y, label.score)
        self.recent_points.append(Point.of(label, self.horizon_days))
        self.pipeline.learn_one(x, y)
        self.labels_seen += 1
        self.positives += y
        records = []
        self.error_drift.update(abs(int(y) - p))
        if self.error_drift.drift_detected and self.labels_seen > self.min_labels:
            self.relearn_until = self.labels_seen + self.min_labels
            records.append(Monitoring("model_drift", label.resolved_at, {
                "labels_seen": self.labels_seen, "response": "heuristic until relearnt",
                "relearn_until": self.relearn_until, **self.metrics()}))
        self.base_rate.update(float(y))
        if self.base_rate.drift_detected:
            records.append(Monitoring("population_drift", label.resolved_at, {
                "signal": "churn_base_rate", "labels_seen": self.labels_seen,
                "base_rate_now": round(float(self.base_rate.estimation), 4)}))
        return records

    def _remember(self, label_id: str) -> None:
        if len(self._recent_ids) == self._recent_ids.maxlen:
            self._recent_set.discard(self._recent_ids[0])
        self._recent_ids.append(label_id)
        self._recent_set.add(label_id)

    def matched(self) -> tuple[float | None, dict[str, float]]:
        """The model's alert threshold and its evidence, on the current weights (cached per label count)."""
        if self._matched is None or self._matched[0] != self.labels_seen:
            self._matched = (self.labels_seen, matched_threshold(self._params(), list(self.recent_points),
                                                                 self.horizon_days, self.heuristic_threshold))
        return self._matched[1]

    @property
    def ready(self) -> bool:
        """Enough labels since the start (or the last drift), better than the heuristic on the
        same labels by progressive validation, and an alert threshold chosen: only then do the
        workers switch."""
        return bool(self.labels_seen >= self.relearn_until and float(self.auc.get()) > float(self.heuristic_auc.get())
                    and self.matched()[0] is not None)

    def metrics(self) -> dict[str, float]:
        _, matched = self.matched()
        return {"roc_auc": round(float(self.auc.get()), 4), "log_loss": round(float(self.log_loss.get()), 4),
                "heuristic_roc_auc": round(float(self.heuristic_auc.get()), 4),
                "base_rate": round(self.positives / self.labels_seen, 4) if self.labels_seen else 0.0, **matched}

    def params(self) -> ModelParams:
        threshold, _ = self.matched()
        return replace(self._params(), ready=self.ready, metrics=self.metrics(), threshold=threshold)

    def _params(self) -> ModelParams:
        scaler: Any = self.pipeline.steps["StandardScaler"]
        model: Any = self.pipeline.steps["LogisticRegression"]
        return ModelParams(version=self.version, ready=False,
                           means={k: float(v) for k, v in scaler.means.items()},
                           variances={k: float(v) for k, v in scaler.vars.items()},
                           weights={k: float(v) for k, v in model.weights.items()},
                           intercept=float(model.intercept), labels_seen=self.labels_seen)

    # -- snapshots -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A new version: params for the scorers and the pickled trainer for its restart."""
        self.version += 1
        blob = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        return {"params": self.params().to_json(), "river_version": river.__version__,
                "trainer": base64.b64encode(blob).decode(), "sha256": hashlib.sha256(blob).hexdigest()}

    @staticmethod
    def restore(record: Mapping[str, Any]) -> Trainer:
        if record.get("river_version") != river.__version__:
            raise SnapshotError(f"snapshot written by River {record.get('river_version')}, this is "
                                f"{river.__version__}: start a new model")
        blob = base64.b64decode(str(record["trainer"]))
        if hashlib.sha256(blob).hexdigest() != record.get("sha256"):
            raise SnapshotError("snapshot checksum mismatch")
        trainer = pickle.loads(blob)  # noqa: S301 - our own topic, checksum verified
        if not isinstance(trainer, Trainer):
            raise SnapshotError("snapshot does not hold a Trainer")
        return trainer


class SegmentMixMonitor:
    """Population drift in the segment mix: for each segment, ADWIN on whether a segment
    change moves a customer into it. A shift in where customers move raises a
    ``population_drift`` record naming the segment and its share before and now."""

    def __init__(self, delta: float = 0.002, min_changes: int = 200) -> None:
        self.delta = delta
        self.min_changes = min_changes
        self.detectors: dict[str, drift.ADWIN] = {}
        self.changes = 0

    def observe(self, new_segment: str | None, at: datetime) -> list[Monitoring]:
        if new_segment is None:
            return []
        self.changes += 1
        if new_segment not in self.detectors:
            # a segment seen late starts from zeros for the changes before it
            self.detectors[new_segment] = drift.ADWIN(delta=self.delta)
        records = []
        for segment, detector in self.detectors.items():
            before = detector.estimation
            detector.update(1.0 if segment == new_segment else 0.0)
            if detector.drift_detected and self.changes > self.min_changes:
                records.append(Monitoring("population_drift", at, {
                    "signal": "segment_mix", "segment": segment, "share_before": round(float(before), 4),
                    "share_now": round(float(detector.estimation), 4), "changes_seen": self.changes}))
        return records
