"""Population drift in the segment mix, fed by the profile agent from each batch's tag changes."""

from __future__ import annotations

from datetime import datetime

from river import drift

from stream.model.params import Monitoring


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
