"""Per-partition event-time maxima, and the watermark reported by ``GET /watermark/``.

Each partition keeps its newest event time, floored to ``GRANULARITY_SECONDS`` so the
changelog-backed table is written at most once per granule of event time.

What drives time (the one statement, also in docs/operations.md, "Time semantics"): the
sweeper ticks each of a worker's partitions with that partition's own newest event time while
it is receiving events, and with the newest event time of the worker (the maximum over its
partitions) once it has been idle for :data:`IDLE_SECONDS` of wall time, so a quiet partition's
customers still age (:class:`SweepClock`). A tick applies the transitions due up to that time
minus the allowed lateness. So during a fast replay a partition that trails the others is
never swept past its own events (an alert could otherwise expire before the customer's
purchase arrives). :func:`watermark` -- the minimum over partitions minus the lateness, the
time before which no partition can still receive an event that counts -- is reported for
monitoring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

GRANULARITY_SECONDS = 60
IDLE_SECONDS = 30.0  # wall-clock seconds without a new event time before a partition follows the others


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


class SweepClock:
    """The event time each partition's sweep tick carries (see the module's docstring). A
    partition is receiving while it processed events within :data:`IDLE_SECONDS` of wall time
    (:meth:`saw_events`, called by the profile agent); judged by that, not by its newest event
    time moving, which is floored to the minute and so stands still for a while in a slow replay.

    >>> clock = SweepClock(idle_seconds=30)
    >>> clock.saw_events(0, wall=0.0); clock.saw_events(1, wall=0.0)
    >>> clock.times({0: 1000, 1: 4000}, wall=20.0)  # both receiving: each its own
    {0: 1000, 1: 4000}
    >>> clock.saw_events(1, wall=25.0)
    >>> clock.times({0: 1000, 1: 6000, 2: 5000}, wall=31.0)  # 0 idle for 31 s, 2 never seen: the newest
    {0: 6000, 1: 6000, 2: 6000}
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._received: dict[int, float] = {}  # partition -> wall time it last processed events

    def saw_events(self, partition: int, wall: float) -> None:
        self._received[partition] = wall

    def times(self, maxima: dict[int, int], wall: float) -> dict[int, int]:
        newest = max(maxima.values(), default=0)
        return {partition: value if wall - self._received.get(partition, -math.inf) < self.idle_seconds else newest
                for partition, value in maxima.items()}
