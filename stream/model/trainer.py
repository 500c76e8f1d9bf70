"""The online churn model, its progressive validation, drift detectors and snapshots.

**Model.** A logistic regression over the churn features (``MODEL_INPUTS``, skewed ones
log-transformed), refitted every thousand labels over a uniform sample of all the labels
learnt, with River's SGD learner serving until the sample is full
(:class:`stream.model.reservoir.ReservoirLogistic`, where the measurements behind both are;
which inputs, and why not the purchase model's outlook: ``docs/churn-model.md``). Explainable exactly: each feature
contributes weight x scaled value to the logit; its parameters are a few hundred bytes.

**One trainer, many scorers.** Only the trainer holds the learner and River's metrics and
detectors. It publishes
versioned :class:`ModelParams` (scaler means and variances, weights, intercept), plain
numbers that every worker scores with (:meth:`ModelParams.score`, equal to the learner's own
prediction), plus the pickled trainer state for its own restart. A pickle is only ever
loaded by the trainer, from our compacted snapshot topic, after checking its checksum and
River version.

**Progressive validation.** Each delayed label is first predicted, then learnt: ROC AUC
and log-loss on examples the model had not seen (and the heuristic's AUC on the same
labels, for comparison).

**Champion and challenger.** Workers switch from the heuristic to the model only when it
has learnt ``min_labels`` labels and its progressive ROC AUC on the most recent labels beats
the heuristic's on the same labels, and back whenever it does not. "Most recent" is the last
``RECENT_PER_CLASS`` labels of each class (:class:`RecentRanking`), not the last few thousand
to arrive: labels do not arrive in event-time order. A purchase resolves its open predictions
at once (label 0), while H days of silence resolve them only when a sweep tick passes that
time (label 1), and in a replay or catch-up the ticks trail the events: on a CDNOW replay the
last 6,000 labels to arrive were all churned, so an arrival window held one class, had no
AUC, and the heuristic kept serving.

**The model's alert threshold.** A logistic model's probabilities are calibrated to the
base rate of the prediction points (about 10% churn), so the heuristic's threshold (0.7)
would almost never be crossed and the switch would silence the warnings. The trainer
therefore chooses the model's own threshold on the last ``THRESHOLD_WINDOW / 2`` labelled
points of each class (per class for the reason above), judged the way warnings are: each
point's features are projected through the silence that followed it (to the purchase that
labelled it 0, or to H days of silence for a churner), and a point is *warned* if the score
reaches the threshold in that time. The
threshold is the highest that warns as many churned points as the heuristic warns at its
threshold in the same time; warned points followed by a purchase are false alarms. Both
recalls and precisions are published with the threshold, the precisions weighting the two
classes by the churn base rate of all the labels learnt (the window's own mix is set by
its halves, not by the population).

**Drift.** River's ADWIN on the model's absolute error: on drift, a ``model_drift`` monitoring
record. The response is the champion rule above: the model serves only while it ranks the
recent labels better than the heuristic. Its sample is kept: on CDNOW the detector fired six to
eight times in nine months of an ageing cohort, and a fit over only the labels since ranked far
worse (see ``stream/model/reservoir.py``); falling back to the heuristic for the next
``min_labels`` labels at each, as this once did, left the heuristic serving at the cut-off. The churn
base rate of the labels, by the day of the prediction, is watched with the activity monitors'
daily CUSUM (``stream/model/activity_drift.py``): a ``population_drift`` record when it shifts,
saying since which day of behaviour (ADWIN over the labels in arrival order fired on the bursts
in which sweeps resolve churned labels).
"""
from __future__ import annotations

import base64
import hashlib
import pickle
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
import river
from river import drift, metrics

from schemas import ChurnLabel
from stream.io.evaluate import roc_auc
from stream.model.activity_drift import ActivityMonitor
from stream.model.params import ModelParams, Monitoring, transform
from stream.model.reservoir import ReservoirLogistic
from stream.model.threshold import THRESHOLD_WINDOW, Point, matched_threshold

RECENT_PER_CLASS = 1_000  # the served scorer is chosen on the last this many labels of each class


class RecentRanking:
    """The model's and the heuristic's ROC AUC on the same recent labels: the last
    ``per_class`` labels of each class to arrive (see the module docstring for why per class).

    >>> recent = RecentRanking(per_class=2)
    >>> for churned, model, heuristic in [(True, .9, .4), (False, .2, .6), (True, .8, .5), (True, .7, .3)]:
    ...     recent.update(churned, model, heuristic)
    >>> recent.figures(), recent.model_wins()
    ({'recent_roc_auc': 1.0, 'recent_heuristic_roc_auc': 0.0}, True)
    """

    _aucs: tuple[float, float] | None = None  # computed since the last update (class default: older snapshots)

    def __init__(self, per_class: int = RECENT_PER_CLASS) -> None:
        self.churned: deque[tuple[float, float]] = deque(maxlen=per_class)  # (model, heuristic) scores
        self.stayed: deque[tuple[float, float]] = deque(maxlen=per_class)

    def update(self, churned: bool, model: float, heuristic: float) -> None:
        (self.churned if churned else self.stayed).append((model, heuristic))
        self._aucs = None

    def aucs(self) -> tuple[float, float] | None:
        """(model, heuristic) ROC AUC; None until both classes have a label."""
        if not self.churned or not self.stayed:
            return None
        if self._aucs is None:
            labelled = [(pair, True) for pair in self.churned] + [(pair, False) for pair in self.stayed]
            self._aucs = (roc_auc((pair[0], y) for pair, y in labelled),
                          roc_auc((pair[1], y) for pair, y in labelled))
        return self._aucs

    def model_wins(self) -> bool:
        aucs = self.aucs()
        return aucs is not None and aucs[0] > aucs[1]

    def figures(self) -> dict[str, float]:
        aucs = self.aucs() or (0.0, 0.0)
        return {"recent_roc_auc": round(aucs[0], 4), "recent_heuristic_roc_auc": round(aucs[1], 4)}


def label_rate_monitor() -> ActivityMonitor:
    """The churn base rate's detector: the activity monitors' daily CUSUM over labels, with a
    higher threshold (8): on 30 seeded streams of 250 days at a 20% base rate it gave no false
    record (7 gave two), and a jump to 50% was recorded within 11 days of labels."""
    return ActivityMonitor(rates={"churn_base_rate": ("churned", "labels")}, signals=("churn_base_rate",),
                           threshold=8.0)


class SnapshotError(ValueError):
    """A snapshot that must not be loaded (bad checksum, other River version)."""


@dataclass(frozen=True)
class Frozen:
    """A trainer's snapshot as taken: what its params are made of, and the pickled trainer.
    Making the record (:meth:`record`: the alert threshold, compression, encoding) reads
    nothing of the trainer, so it can run in another thread while the trainer learns on."""

    base: ModelParams  # the weights (``Trainer._params``)
    eligible: bool  # enough labels, and the model beats the heuristic on the recent ones
    figures: dict[str, float]  # the metrics but the threshold's evidence
    points: tuple[Point, ...]  # what the threshold is chosen on
    base_rate: float | None
    horizon_days: float
    heuristic_threshold: float
    matched: tuple[float | None, dict[str, float]] | None  # the threshold, when the trainer had it already
    pickled: bytes

    def params(self) -> ModelParams:
        matched = self.matched or matched_threshold(self.base, list(self.points), self.horizon_days,
                                                    self.heuristic_threshold, self.base_rate)
        return _served(self.base, self.eligible, self.figures, matched)

    def record(self) -> dict[str, Any]:
        """The snapshot record as published."""
        # level 1: a fifth of the default's time, for a little more size (zlib releases the GIL)
        blob = zlib.compress(self.pickled, 1)
        return {"params": self.params().to_json(), "river_version": river.__version__, "compression": "zlib",
                "trainer": base64.b64encode(blob).decode(), "sha256": hashlib.sha256(blob).hexdigest()}


def _served(base: ModelParams, eligible: bool, figures: dict[str, float],
            matched: tuple[float | None, dict[str, float]]) -> ModelParams:
    threshold, evidence = matched
    return replace(base, ready=eligible and threshold is not None, metrics={**figures, **evidence},
                   threshold=threshold)


class Trainer:
    """The single online learner (see the module docstring)."""

    def __init__(self, min_labels: int = 500, seen_ids: int = 5_000,
                 heuristic_threshold: float = 0.7, horizon_days: float = 90) -> None:
        self.model = ReservoirLogistic()
        self.auc = metrics.ROCAUC()
        self.log_loss = metrics.LogLoss()
        self.heuristic_auc = metrics.ROCAUC()
        self.purchase_auc = metrics.ROCAUC()  # the population's purchase model, on the labels that carry it
        # which scorer serves is decided on the most recent labels
        self.recent = RecentRanking()
        self.error_drift = drift.ADWIN(delta=0.002)
        self.label_rates = label_rate_monitor()
        self.min_labels = min_labels
        self.labels_seen = 0
        self.positives = 0
        self.version = 0
        self.offset = -1  # the last churn-labels offset learnt
        self._recent_ids: deque[str] = deque(maxlen=seen_ids)
        self._recent_set: set[str] = set()
        self.heuristic_threshold = heuristic_threshold
        self.horizon_days = horizon_days
        self.churned_points: deque[Point] = deque(maxlen=THRESHOLD_WINDOW // 2)
        self.stayed_points: deque[Point] = deque(maxlen=THRESHOLD_WINDOW // 2)
        self._matched: tuple[int, tuple[float | None, dict[str, float]]] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # snapshots pickled before the model had its own threshold
        state.setdefault("heuristic_threshold", 0.7)
        state.setdefault("horizon_days", 90)
        state.setdefault("purchase_auc", metrics.ROCAUC())
        if "model" not in state:  # a snapshot of the SGD learner this replaced: learn anew
            state.pop("pipeline", None)
            state["model"] = ReservoirLogistic()
        state.pop("relearn_until", None)
        state.pop("recent_auc", None)
        state.pop("recent_heuristic_auc", None)
        state.setdefault("recent", RecentRanking())
        points: list[Point] = list(state.pop("recent_points", ()))  # one window, before it was per class
        if "points" in state:  # compact form (see __getstate__)
            vectors, churned, windows = state.pop("points")
            points += [Point(tuple(float(v) for v in vector), bool(c), float(w))
                       for vector, c, w in zip(vectors, churned, windows, strict=True)]
        state["churned_points"] = deque((p for p in points if p.churned), maxlen=THRESHOLD_WINDOW // 2)
        state["stayed_points"] = deque((p for p in points if not p.churned), maxlen=THRESHOLD_WINDOW // 2)
        state.setdefault("_recent_set", set(state["_recent_ids"]))
        if "label_rates" not in state:  # it replaced an ADWIN over the labels in arrival order
            state.pop("base_rate", None)
            state["label_rates"] = label_rate_monitor()
        state["_matched"] = None
        self.__dict__.update(state)

    def __getstate__(self) -> dict[str, Any]:
        # Kept small for the snapshot topic: the threshold's points as arrays, the
        # label-id set rebuilt from its deque.
        points = list(self.recent_points)
        compact = (np.array([p.vector for p in points], dtype=float).reshape(len(points), -1),
                   np.array([p.churned for p in points], dtype=bool), np.array([p.window_days for p in points]))
        state = {**self.__dict__, "_matched": None, "points": compact}
        del state["churned_points"], state["stayed_points"], state["_recent_set"]
        return state

    @property
    def recent_points(self) -> list[Point]:
        """The labelled points the alert threshold is chosen on: the newest of each class."""
        return [*self.churned_points, *self.stayed_points]

    def learn(self, label: ChurnLabel, offset: int | None = None) -> list[Monitoring]:
        """Predict, score the prediction, then learn; returns monitoring records raised."""
        if label.label_id in self._recent_set or (offset is not None and offset <= self.offset):
            return []  # a redelivery (same offset), or the same label sent again after a profile retry
        self._remember(label.label_id)
        if offset is not None:
            self.offset = offset
        x, y = transform(label.features), bool(label.label)
        p = self.model.predict_proba_one(x)
        self.auc.update(y, p)
        self.log_loss.update(y, p)
        if label.score is not None:
            self.heuristic_auc.update(y, label.score)
            self.recent.update(y, p, label.score)
        if "purchase_churn" in label.features:
            self.purchase_auc.update(y, label.features["purchase_churn"])
        (self.churned_points if y else self.stayed_points).append(Point.of(label, self.horizon_days))
        self.model.learn_one(x, y)
        self.labels_seen += 1
        self.positives += y
        records = []
        self.error_drift.update(abs(int(y) - p))
        if self.error_drift.drift_detected and self.labels_seen > self.min_labels:
            records.append(Monitoring("model_drift", label.resolved_at, {
                "labels_seen": self.labels_seen, **self.metrics(),
                "response": f"served only while it beats the heuristic on the last {RECENT_PER_CLASS} labels "
                            "of each class"}))
        records += self._watch_base_rate(label, y)
        return records

    def _watch_base_rate(self, label: ChurnLabel, churned: bool) -> list[Monitoring]:
        """The churn base rate by the day of the behaviour (the prediction), each day judged
        once every label of it can have resolved: H days and the lateness after it. (Labels
        arrive in no useful order: a purchase resolves at once, silence at a sweep tick.)"""
        self.label_rates.observe(int(label.predicted_at.timestamp() // 86_400),
                                 {"labels": 1.0, "churned": 1.0 if churned else 0.0})
        found = self.label_rates.advance(label.resolved_at - timedelta(days=self.horizon_days))
        return [Monitoring(record.kind, label.resolved_at, {**record.details, "labels_seen": self.labels_seen})
                for record in found]

    def _remember(self, label_id: str) -> None:
        if len(self._recent_ids) == self._recent_ids.maxlen:
            self._recent_set.discard(self._recent_ids[0])
        self._recent_ids.append(label_id)
        self._recent_set.add(label_id)

    def matched(self) -> tuple[float | None, dict[str, float]]:
        """The model's alert threshold and its evidence, on the current weights (cached per label count)."""
        if self._matched is None or self._matched[0] != self.labels_seen:
            self._matched = (self.labels_seen, matched_threshold(self._params(), self.recent_points, self.horizon_days,
                                                                 self.heuristic_threshold, self._base_rate()))
        return self._matched[1]

    @property
    def ready(self) -> bool:
        """Enough labels, better than the heuristic on the same most recent labels by progressive
        validation, and an alert threshold chosen: only then do the workers switch (and they
        switch back whenever the heuristic ranks the recent labels better)."""
        return self._eligible() and self.matched()[0] is not None

    def _eligible(self) -> bool:
        return bool(self.labels_seen >= self.min_labels and self.recent.model_wins())

    def _base_rate(self) -> float | None:
        return self.positives / self.labels_seen if self.labels_seen else None

    def metrics(self) -> dict[str, float]:
        return {**self._figures(), **self.matched()[1]}

    def _figures(self) -> dict[str, float]:
        return {"roc_auc": round(float(self.auc.get()), 4), "log_loss": round(float(self.log_loss.get()), 4),
                "heuristic_roc_auc": round(float(self.heuristic_auc.get()), 4),
                **self.recent.figures(),
                "purchase_model_roc_auc": round(float(self.purchase_auc.get()), 4),
                "base_rate": round(self.positives / self.labels_seen, 4) if self.labels_seen else 0.0}

    def params(self) -> ModelParams:
        return _served(self._params(), self._eligible(), self._figures(), self.matched())

    def _params(self) -> ModelParams:
        model = self.model
        return ModelParams(version=self.version, ready=False, means=dict(model.means), variances=dict(model.variances),
                           weights=dict(model.weights), intercept=model.intercept, labels_seen=self.labels_seen)

    # -- snapshots -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A new version: params for the scorers and the pickled trainer for its restart."""
        return self.freeze().record()

    def freeze(self) -> Frozen:
        """A new version, as what a snapshot reads of the trainer (see :class:`Frozen`)."""
        self.version += 1
        matched = self._matched[1] if self._matched is not None and self._matched[0] == self.labels_seen else None
        return Frozen(self._params(), self._eligible(), self._figures(), tuple(self.recent_points), self._base_rate(),
                      self.horizon_days, self.heuristic_threshold, matched,
                      pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def restore(record: Mapping[str, Any]) -> Trainer:
        if record.get("river_version") != river.__version__:
            raise SnapshotError(f"snapshot written by River {record.get('river_version')}, this is "
                                f"{river.__version__}: start a new model")
        blob = base64.b64decode(str(record["trainer"]))
        if hashlib.sha256(blob).hexdigest() != record.get("sha256"):
            raise SnapshotError("snapshot checksum mismatch")
        if record.get("compression") == "zlib":
            blob = zlib.decompress(blob)
        trainer = pickle.loads(blob)  # noqa: S301 - our own topic, checksum verified
        if not isinstance(trainer, Trainer):
            raise SnapshotError("snapshot does not hold a Trainer")
        return trainer
