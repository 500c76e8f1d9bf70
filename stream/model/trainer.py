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
import pickle
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import river
from river import compose, drift, linear_model, metrics, optim, preprocessing

from schemas import ChurnLabel
from stream.model.params import ModelParams, Monitoring, transform
from stream.model.threshold import THRESHOLD_WINDOW, Point, matched_threshold


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
        self.purchase_auc = metrics.ROCAUC()  # the population's purchase model, on the labels that carry it
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
        state.setdefault("purchase_auc", metrics.ROCAUC())
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
        if "purchase_churn" in label.features:
            self.purchase_auc.update(y, label.features["purchase_churn"])
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
                "purchase_model_roc_auc": round(float(self.purchase_auc.get()), 4),
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
