"""Population drift in the segment mix, fed by the profile agent from each batch's tag changes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from river import drift

from schemas import TagChange
from stream.core.tagging import RERANKED
from stream.model.params import Monitoring


class SegmentMixMonitor:
    """Population drift in the segment mix: for each segment, ADWIN on whether a segment
    change moves a customer into it. A shift in where customers move raises a
    ``population_drift`` record naming the segment and its share before and now, when the
    share moved by at least ``min_shift`` (absolute) and that segment has not had a record in
    the last ``cooldown`` of event time: a population that keeps moving (a cohort ageing
    from New Customers to Hibernating) gives a record a month per segment, not one an hour.

    It watches the moves customers make by what they do and by time (:meth:`observe_changes`), not
    the re-ranking when the population's cut points move: with cut points at the population's
    quantiles, that re-ranking keeps the population's mix where it was, and it comes in bursts
    whose timing is the worker's (how often it rescores, how far behind it is), not the customers'."""

    def __init__(self, delta: float = 0.002, min_changes: int = 200, min_shift: float = 0.05,
                 cooldown: timedelta = timedelta(days=30)) -> None:
        self.delta = delta
        self.min_changes = min_changes
        self.min_shift = min_shift
        self.cooldown = cooldown
        self.detectors: dict[str, drift.ADWIN] = {}
        self.last_record: dict[str, datetime] = {}
        self.reference: dict[str, float] = {}  # each segment's share when last reported (or first judged)
        self.moving: set[str] = set()  # ADWIN saw a change; reported once the share has moved min_shift
        self.changes = 0

    def observe_changes(self, changes: Iterable[TagChange]) -> list[Monitoring]:
        """A batch's tag changes: each segment change a customer made by an event or by time."""
        records: list[Monitoring] = []
        for change in changes:
            if change.tag == "segment" and change.reason != RERANKED:
                records += self.observe(change.new, change.event_time)
        return records

    def observe(self, new_segment: str | None, at: datetime) -> list[Monitoring]:
        if new_segment is None:
            return []
        self.changes += 1
        if new_segment not in self.detectors:
            # a segment seen late starts from zeros for the changes before it
            self.detectors[new_segment] = drift.ADWIN(delta=self.delta)
        records = []
        for segment, detector in self.detectors.items():
            detector.update(1.0 if segment == new_segment else 0.0)
            if self.changes <= self.min_changes:
                continue
            before = self.reference.setdefault(segment, float(detector.estimation))
            if detector.drift_detected:
                self.moving.add(segment)
            if segment not in self.moving or abs(float(detector.estimation) - before) < self.min_shift:
                continue
            last = self.last_record.get(segment)
            if last is None or at - last >= self.cooldown:
                self.moving.discard(segment)
                self.last_record[segment] = at
                self.reference[segment] = float(detector.estimation)
                records.append(Monitoring("population_drift", at, {
                    "signal": "segment_mix", "segment": segment, "share_before": round(before, 4),
                    "share_now": round(float(detector.estimation), 4), "changes_seen": self.changes}))
        return records
