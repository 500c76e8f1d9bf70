"""The event-time watermark: the newest event time seen, minus the allowed lateness.

Each partition keeps its newest event time, floored to ``GRANULARITY_SECONDS`` so the
changelog-backed table is written at most once per granule of event time. The app's
watermark is the minimum over partitions: no partition can still hold an event that counts
and is older than it. The sweeper and the churn labeler are driven by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

GRANULARITY_SECONDS = 60


def advance(stored: int | None, event_time: datetime) -> int | None:
    """The new per-partition maximum (epoch seconds) to store, or None when unchanged.

    >>> t = datetime(2024, 1, 1, 0, 0, 59, tzinfo=UTC)
    >>> advance(None, t)
    1704067200
    >>> advance(1704067200, t) is None, advance(1704067200, t + timedelta(seconds=1))
    (True, 1704067260)
    """
    floored = int(event_time.timestamp()) // GRANULARITY_SECONDS * GRANULARITY_SECONDS
    return floored if stored is None or floored > stored else None


def watermark(partition_maxima: Iterable[int], lateness: timedelta) -> datetime | None:
    """The app's watermark from every partition's newest event time.

    >>> watermark([1704067200, 1704070800], timedelta(hours=1)).isoformat()
    '2023-12-31T23:00:00+00:00'
    >>> watermark([], timedelta(0)) is None
    True
    """
    maxima = list(partition_maxima)
    if not maxima:
        return None
    return datetime.fromtimestamp(min(maxima), UTC) - lateness
