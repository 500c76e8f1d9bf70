"""What every worker scores with: the published model parameters (plain numbers), the
model's input transform, and the records the model side sends to ``pulse.monitoring``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import river

from stream.core.churn import MODEL_INPUTS, ChurnConfig, ChurnScore

LOG_FEATURES = frozenset({"recency_days", "frequency", "monetary", "avg_order_value", "interval_mean_days",
                          "interval_std_days", "recency_ratio", "complaints", "refunds", "tenure_days"})
MODEL_PREFIX = "logreg"


def transform(features: Mapping[str, float]) -> dict[str, float]:
    """The model's inputs (``MODEL_INPUTS``): log1p of the skewed features, the others as they are.

    >>> transform({"frequency": 0.0, "activity_trend": 0.5})
    {'frequency': 0.0, 'activity_trend': 0.5}
    """
    return {name: math.log1p(max(0.0, value)) if name in LOG_FEATURES else float(value)
            for name, value in features.items() if name in MODEL_INPUTS}



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

    def probability(self, features: Mapping[str, float]) -> float:
        """The score's probability alone (no explanation): what alert timing searches with."""
        logit = self.intercept
        for name, value in transform(features).items():
            variance = self.variances.get(name, 0.0)
            if variance:
                logit += self.weights.get(name, 0.0) * (value - self.means.get(name, 0.0)) / math.sqrt(variance)
        return 1 / (1 + math.exp(-max(-30.0, min(30.0, logit))))

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

    @property
    def adds_warnings(self) -> bool:
        """Whether its warnings join the heuristic's under ``warn_by="either"``: only while, on the
        recent labelled points its threshold was chosen on, the warnings of either were at least
        as precise as the heuristic's alone. (A learner ready early, on few labels, once
        doubled the alerts and halved their precision.) True when not measured.

        >>> params = ModelParams(1, True, {}, {}, {}, 0.0, 500, metrics={"heuristic_precision": 0.6,
        ...                                                                "either_precision": 0.4})
        >>> params.adds_warnings
        False
        """
        either, alone = self.metrics.get("either_precision"), self.metrics.get("heuristic_precision")
        return either is None or alone is None or either >= alone

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



def served_record(params: ModelParams | None, config: ChurnConfig) -> dict[str, Any]:
    """What readers need to score as of now as the workers do (``pulse:churn-model``): the
    ready model's parameters (None: the heuristic) and the horizon and threshold.

    >>> served_record(None, ChurnConfig(horizon_days=60))
    {'params': None, 'horizon_days': 60, 'threshold': 0.7}
    """
    return {"params": params.to_json() if params is not None else None, "horizon_days": config.horizon_days,
            "threshold": config.threshold}


def read_served(data: Mapping[str, Any]) -> tuple[ModelParams | None, ChurnConfig]:
    """The scorer and settings of a ``served_record``."""
    params = ModelParams.from_json(data["params"]) if data.get("params") else None
    return params, ChurnConfig(horizon_days=int(data["horizon_days"]), threshold=float(data["threshold"]))


@dataclass(frozen=True)
class Monitoring:
    """A record for ``pulse.monitoring``."""

    kind: str
    at: datetime
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at.isoformat(), **self.details}
