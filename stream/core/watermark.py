"""Per-partition event-time maxima, and the watermark reported by ``GET /watermark/``.

Each partition keeps its newest event time, floored to ``GRANULARITY_SECONDS`` so the
changelog-backed table is written at most once per granule of event time.

What drives time (the one statement, also in docs/operations.md, "Time semantics"): the
sweeper ticks each of a worker's partitions with the newest event time *of that worker*
(the maximum over its partitions), and a tick applies the transitions due up to that time
minus the allowed lateness. :func:`watermark` -- the minimum over partitions minus the
lateness, the time before which no partition can still receive an event that counts -- is
reported for monitoring; it does not drive the sweeps.
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
