"""Rolling activity windows (7/30/90/365 days) in bounded time buckets.

Daily buckets cover the last 30 days of a customer's activity and weekly buckets the
year before that, so a customer's windows take at most 30 + 53 buckets however many
events they have. A bucket is ``[index, orders, spend_cents, sessions, clicks]`` where
the index is the day (daily) or the week (weekly) since 1970.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

DAILY_SPAN = 30
WEEKLY_SPAN = 53

Bucket = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Activity:
    orders: int = 0
    spend_cents: int = 0
    sessions: int = 0
    clicks: int = 0


def day_index(moment: datetime) -> int:
    return int(moment.timestamp() // 86_400)


def add(daily: Sequence[Bucket], weekly: Sequence[Bucket], when: datetime, newest: datetime,
        *, orders: int = 0, spend_cents: int = 0, sessions: int = 0,
        clicks: int = 0) -> tuple[tuple[Bucket, ...], tuple[Bucket, ...]]:
    """Count activity at ``when``; roll daily buckets older than 30 days (before ``newest``)
    into weeks, and drop weeks older than a year."""
    today = day_index(newest)
    day = day_index(when)
    days = {b[0]: list(b) for b in daily}
    weeks = {b[0]: list(b) for b in weekly}
    target = days if day > today - DAILY_SPAN else weeks
    key = day if target is days else day // 7
    bucket = target.setdefault(key, [key, 0, 0, 0, 0])
    for i, amount in enumerate((orders, spend_cents, sessions, clicks), 1):
        bucket[i] += amount
    return _rolled(days, weeks, today)


def combine(daily: Sequence[Bucket], weekly: Sequence[Bucket], other_daily: Sequence[Bucket],
            other_weekly: Sequence[Bucket], newest: datetime, sign: int = 1
            ) -> tuple[tuple[Bucket, ...], tuple[Bucket, ...]]:
    """Add (``sign`` 1) or take out (-1, floored at zero) another set of buckets, as of ``newest``:
    how an anonymous id's activity moves into a customer's windows and back out.

    >>> from datetime import UTC, timedelta
    >>> t = datetime(2024, 3, 1, tzinfo=UTC)
    >>> d, w = add((), (), t - timedelta(days=40), t, sessions=1)
    >>> d2, w2 = add((), (), t - timedelta(days=1), t, sessions=2, clicks=3)
    >>> both = combine(d, w, d2, w2, t)
    >>> window(*both, t, 365), combine(*both, d2, w2, t, sign=-1) == (d, w)
    (Activity(orders=0, spend_cents=0, sessions=3, clicks=3), True)
    """
    today = day_index(newest)
    days = {b[0]: list(b) for b in daily}
    weeks = {b[0]: list(b) for b in weekly}
    moves = [(b, b[0] in days or (sign > 0 and b[0] > today - DAILY_SPAN)) for b in other_daily]
    moves += [(b, False) for b in other_weekly]
    for i, (bucket, daily_bucket) in enumerate(moves):
        is_week = i >= len(other_daily)
        target, key = (days, bucket[0]) if daily_bucket else (weeks, bucket[0] if is_week else bucket[0] // 7)
        if key not in target and sign < 0:
            continue
        into = target.setdefault(key, [key, 0, 0, 0, 0])
        for j in range(1, 5):
            into[j] = max(0, into[j] + sign * bucket[j])
        if not any(into[1:]):
            del target[key]
    return _rolled(days, weeks, today)


def _rolled(days: dict[int, list[int]], weeks: dict[int, list[int]], today: int
            ) -> tuple[tuple[Bucket, ...], tuple[Bucket, ...]]:
    """Roll daily buckets older than the daily span into weeks, drop weeks older than a year."""
    for old_day in [d for d in days if d <= today - DAILY_SPAN]:
        moved = days.pop(old_day)
        week = weeks.setdefault(old_day // 7, [old_day // 7, 0, 0, 0, 0])
        for i in range(1, 5):
            week[i] += moved[i]
    oldest_week = (today - DAILY_SPAN) // 7 - WEEKLY_SPAN
    for old_week in [w for w in weeks if w < oldest_week]:
        del weeks[old_week]
    as_tuple = lambda d: tuple(tuple(v) for _, v in sorted(d.items()))  # noqa: E731
    return as_tuple(days), as_tuple(weeks)  # type: ignore[return-value]


def window(daily: Sequence[Bucket], weekly: Sequence[Bucket], now: datetime, days: int) -> Activity:
    """Activity in the ``days`` before ``now`` (``now`` at or after the newest event);
    windows up to 30 days are exact, longer ones exact to the week.

    >>> from datetime import UTC, timedelta
    >>> t = datetime(2024, 3, 1, tzinfo=UTC)
    >>> d, w = add((), (), t - timedelta(days=2), t, orders=1, spend_cents=500)
    >>> d, w = add(d, w, t - timedelta(days=20), t, orders=1, spend_cents=100)
    >>> window(d, w, t, 7), window(d, w, t, 30).spend_cents
    (Activity(orders=1, spend_cents=500, sessions=0, clicks=0), 600)
    """
    start_day = day_index(now) - days
    totals = [0, 0, 0, 0]
    for bucket in daily:
        if bucket[0] > start_day:
            for i in range(4):
                totals[i] += bucket[i + 1]
    # Weekly buckets hold only days older than the daily span: they count for the longer
    # windows, whole weeks at a time.
    for bucket in weekly if days > DAILY_SPAN else ():
        if bucket[0] * 7 + 6 > start_day:
            for i in range(4):
                totals[i] += bucket[i + 1]
    return Activity(*totals)
