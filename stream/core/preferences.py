"""Preference signals: exponentially decayed category interest and channel usage.

Category interest decays with a 30-day half-life in event time, so the top categories
follow what a customer looks at and buys now; at most ``MAX_CATEGORIES`` are kept (the
weakest is dropped), which bounds the state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

HALF_LIFE_DAYS = 30.0
MAX_CATEGORIES = 8
WEIGHTS = {"purchase": 5.0, "add_to_cart": 2.0, "wishlist_add": 2.0, "product_view": 1.0}

# category -> (score, as of epoch day)
Interest = Mapping[str, tuple[float, float]]


def decayed(score: float, since_day: float, now_day: float) -> float:
    return score * math.pow(0.5, max(0.0, now_day - since_day) / HALF_LIFE_DAYS)


def add_interest(interest: Interest, category: str, weight: float, when: datetime) -> dict[str, tuple[float, float]]:
    """Add ``weight`` to a category at ``when`` (scores are kept as of their own day).

    >>> from datetime import UTC
    >>> i = add_interest({}, "books", 1.0, datetime(2024, 1, 1, tzinfo=UTC))
    >>> i = add_interest(i, "music", 1.0, datetime(2024, 1, 31, tzinfo=UTC))
    >>> top_categories(i, datetime(2024, 1, 31, tzinfo=UTC))
    ['music', 'books']
    """
    day = when.timestamp() / 86_400
    updated = dict(interest)
    score, since = updated.get(category, (0.0, day))
    # Fold onto the later of the two days, so out-of-order events decay correctly.
    base = max(since, day)
    updated[category] = (round(decayed(score, since, base) + decayed(weight, day, base), 6), round(base, 4))
    if len(updated) > MAX_CATEGORIES:
        weakest = min(updated, key=lambda c: decayed(updated[c][0], updated[c][1], base))
        del updated[weakest]
    return updated


def top_categories(interest: Interest, now: datetime, n: int = 3) -> list[str]:
    day = now.timestamp() / 86_400
    ranked = sorted(interest, key=lambda c: (-decayed(interest[c][0], interest[c][1], day), c))
    return ranked[:n]


def preferred_channel(counts: Mapping[str, int]) -> str | None:
    """The most used channel (alphabetical on ties).

    >>> preferred_channel({"web": 3, "app": 5}), preferred_channel({})
    ('app', None)
    """
    if not counts:
        return None
    return max(sorted(counts), key=lambda c: counts[c])
