"""What the dashboard of ``pulse serve`` shows, computed from Redis: segment sizes now and over
event time, the segment migration matrix, the churn-risk and predicted-value distributions
(scores as of now, as lookups answer them) and the alert feed.
The pure functions here take plain records; :func:`summary` reads them from Redis.

Segment history comes from the capped ``pulse:tags`` stream (segment changes with their old
and new segment and event time): sizes at the end of each day are today's sizes minus the
net moves after that day, so the history reaches back as far as the stream does.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from stream.api.lookup import AsyncLookupClient

HISTORY_DAYS = 60
RISK_BINS = 10
SAMPLE_CUSTOMERS = 5000  # customers read for the churn-risk and predicted-value distributions
# predicted spend within the horizon (``predicted_value``, in the events' currency): bin edges
VALUE_EDGES = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
TAG_STREAM_READ = 100_000


def segment_moves(changes: Iterable[Mapping[str, str]]) -> list[tuple[datetime, str, str]]:
    """``(event_time, old, new)`` of the segment changes among tag-stream entries ("" = none).

    >>> segment_moves([{"tag": "segment", "old": "", "new": "Loyal", "event_time": "2024-01-02T00:00:00+00:00"},
    ...                {"tag": "rfm", "old": "111", "new": "211", "event_time": "2024-01-02T00:00:00+00:00"}])
    [(datetime.datetime(2024, 1, 2, 0, 0, tzinfo=datetime.timezone.utc), '', 'Loyal')]
    """
    return [(datetime.fromisoformat(c["event_time"]), c.get("old", ""), c.get("new", ""))
            for c in changes if c.get("tag") == "segment" and c.get("event_time")]


def migration_matrix(moves: Sequence[tuple[datetime, str, str]], since: datetime) -> dict[str, dict[str, int]]:
    """How many customers moved from each segment to each other since ``since`` (event time);
    arrivals of new customers are under ``""``.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 10, tzinfo=UTC)
    >>> migration_matrix([(t, "Loyal", "At Risk"), (t, "Loyal", "At Risk"), (t, "", "New"),
    ...                   (t - timedelta(days=9), "At Risk", "Lost")], since=t - timedelta(days=7))
    {'Loyal': {'At Risk': 2}, '': {'New': 1}}
    """
    matrix: dict[str, dict[str, int]] = {}
    for when, old, new in moves:
        if when >= since and old != new:
            row = matrix.setdefault(old, {})
            row[new] = row.get(new, 0) + 1
    return matrix


def segment_history(current: Mapping[str, int], moves: Sequence[tuple[datetime, str, str]], days: int
                    ) -> dict[str, Any]:
    """Segment sizes at the end of each of the last ``days`` days of event time (up to the newest
    move): today's sizes minus the net moves after each day.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 10, 12, tzinfo=UTC)
    >>> history = segment_history({"Loyal": 1, "At Risk": 1}, [(t, "Loyal", "At Risk")], days=2)
    >>> history["days"], history["sizes"]
    (['2024-01-09', '2024-01-10'], {'At Risk': [0, 1], 'Loyal': [2, 1]})
    """
    if not moves:
        return {"days": [], "sizes": {}}
    last_day = max(when for when, _, _ in moves).date()
    day_list = [last_day - timedelta(days=n) for n in range(days - 1, -1, -1)]
    on_day: dict[Any, Counter[str]] = {}
    for when, old, new in moves:
        net = on_day.setdefault(when.date(), Counter())
        if old:
            net[old] -= 1
        if new:
            net[new] += 1
    net_after: dict[str, Counter[str]] = {}
    running: Counter[str] = Counter()
    later = sorted((day for day in on_day if day > day_list[0]), reverse=True)
    for day in reversed(day_list):  # newest first: the moves after each day, accumulated
        while later and later[0] > day:
            running.update(on_day[later.pop(0)])
        net_after[day.isoformat()] = Counter(running)
    segments = sorted(set(current) | {s for _, old, new in moves for s in (old, new) if s})
    sizes = {s: [current.get(s, 0) - net_after[day.isoformat()][s] for day in day_list] for s in segments}
    return {"days": [day.isoformat() for day in day_list], "sizes": sizes}


def risk_histogram(probabilities: Iterable[float], bins: int = RISK_BINS) -> list[int]:
    """Counts of churn probabilities in ``bins`` equal bins over [0, 1].

    >>> risk_histogram([0.0, 0.05, 0.5, 0.99, 1.0], bins=4)
    [2, 0, 1, 2]
    """
    counts = [0] * bins
    for p in probabilities:
        counts[min(bins - 1, max(0, int(p * bins)))] += 1
    return counts


def value_histogram(values: Iterable[float], edges: Sequence[float] = VALUE_EDGES) -> list[int]:
    """Counts of predicted values below each edge after the previous one, and above the last.

    >>> value_histogram([0.0, 9.99, 10, 120.5, 5000], edges=(10, 100, 1000))
    [2, 1, 1, 1]
    """
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(edges, value)] += 1
    return counts


async def summary(client: AsyncLookupClient, segments: Sequence[str], window_days: int = 7) -> dict[str, Any]:
    """Everything the dashboard's Redis panels need, in one answer."""
    sizes = await client.segment_sizes(list(segments))
    moves = segment_moves(await client.recent_tag_changes(TAG_STREAM_READ))
    newest = max((when for when, _, _ in moves), default=None)
    migration = {f"{n}d": migration_matrix(moves, newest - timedelta(days=n)) if newest else {}
                 for n in (1, window_days)}
    sample = await client.sample_fields(("churn_probability", "churn_risk", "predicted_value", "potential"),
                                        SAMPLE_CUSTOMERS)
    probabilities = [float(row["churn_probability"]) for row in sample if row.get("churn_probability")]
    values = [float(row["predicted_value"]) for row in sample if row.get("predicted_value")]
    return {
        "segments": sizes,
        "history": segment_history(sizes, moves, HISTORY_DAYS),
        "migration": migration,
        "as_of_event_time": newest.isoformat() if newest else None,
        "risk": {"bins": risk_histogram(probabilities), "bands": dict(Counter(r.get("churn_risk") or "unscored"
                                                                              for r in sample)),
                 "sampled": len(sample)},
        "value": {"edges": list(VALUE_EDGES), "bins": value_histogram(values), "predicted": len(values),
                  "total": round(sum(values), 2), "sampled": len(sample),
                  "potential": dict(Counter(r["potential"] for r in sample if r.get("potential")))},
        "alerts": await client.recent_alerts(limit=20),
    }
