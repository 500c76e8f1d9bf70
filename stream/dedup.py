"""Admission of an event into a customer's state: new, a redelivered duplicate, or too late.

Per customer, bounded: the ids of events within ``horizon`` of the customer's newest event
time are remembered (at most ``max_ids`` of them), and an event older than the customer's
newest event time minus ``lateness`` is too late. Kafka keeps one customer's events in
order within a partition, so this lateness does not depend on skew between partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Admission(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


@dataclass(frozen=True)
class DedupPolicy:
    lateness: timedelta = timedelta(days=3)
    horizon: timedelta = timedelta(days=7)
    max_ids: int = 256

    def __post_init__(self) -> None:
        if self.horizon < self.lateness:
            # An id forgotten while its event could still be accepted would be double counted.
            raise ValueError("the dedup horizon must be at least the allowed lateness")


DEFAULT_POLICY = DedupPolicy()

SeenIds = tuple[tuple[str, int], ...]


def admit(seen: SeenIds, newest: datetime | None, event_id: str, event_time: datetime,
          policy: DedupPolicy) -> Admission:
    """Classify an event for a customer whose newest event time is ``newest``.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 10, tzinfo=UTC)
    >>> admit((("e1", int(t.timestamp())),), t, "e1", t, DEFAULT_POLICY).value
    'duplicate'
    >>> admit((), t, "e2", t - timedelta(days=4), DEFAULT_POLICY).value
    'too_late'
    >>> admit((), t, "e3", t - timedelta(days=2), DEFAULT_POLICY).value
    'applied'
    """
    if any(seen_id == event_id for seen_id, _ in seen):
        return Admission.DUPLICATE
    if newest is not None and event_time < newest - policy.lateness:
        return Admission.TOO_LATE
    return Admission.APPLIED


def remember(seen: SeenIds, event_id: str, event_time: datetime, newest: datetime,
             policy: DedupPolicy) -> tuple[SeenIds, int]:
    """Add an id, forget those older than the horizon, keep at most ``max_ids``.

    Returns the new ids and how many were evicted by the cap while still inside the
    horizon (those could let a duplicate through; the count makes that visible).
    """
    cutoff = int((newest - policy.horizon).timestamp())
    kept = tuple(item for item in seen if item[1] >= cutoff) + ((event_id, int(event_time.timestamp())),)
    evicted = max(0, len(kept) - policy.max_ids)
    return kept[evicted:], evicted
