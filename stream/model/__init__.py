"""The online churn model: published parameters (``params``), the alert threshold
(``threshold``), the single trainer and its snapshots (``trainer``), and the segment-mix
drift monitor (``monitors``). The names are re-exported here; trainer snapshots pickled
before the split refer to ``stream.model.Trainer`` and ``stream.model.Point``."""

from stream.model.monitors import SegmentMixMonitor
from stream.model.params import (
    LOG_FEATURES,
    MODEL_PREFIX,
    ModelParams,
    Monitoring,
    read_served,
    served_record,
    transform,
)
from stream.model.threshold import THRESHOLD_MIN_POSITIVES, THRESHOLD_WINDOW, Point, in_time_reach, matched_threshold
from stream.model.trainer import Frozen, SnapshotError, Trainer

__all__ = ["LOG_FEATURES", "MODEL_PREFIX", "THRESHOLD_MIN_POSITIVES", "THRESHOLD_WINDOW", "ModelParams", "Monitoring",
           "Frozen", "Point", "SegmentMixMonitor", "SnapshotError", "Trainer", "in_time_reach", "matched_threshold",
           "read_served", "served_record", "transform"]
