"""RFM scores 1-5 by a customer's standing in the whole scored population.

score = 1 + min(4, floor(5 x share of scored customers with a strictly worse value)); a
customer is worse on recency when their last purchase is earlier (more days since it),
on frequency with fewer orders, on monetary with less spent. Ties share a score.

The population is kept incrementally as histograms (remove the old value, add the new one
when a customer changes), fine enough to match an exact batch computation for nearly all
customers: recency by purchase day and frequency by order count are exact; monetary uses
buckets 0.5% wide. Histograms of several partitions merge by adding counts.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MONETARY_RESOLUTION = 1.005  # bucket width ratio


@dataclass(frozen=True)
class RawRfmValues:
    """The raw values scored: last purchase day (days since 1970-01-01), orders, cents spent."""

    last_purchase_day: int
    orders: int
    monetary_cents: int


@dataclass(frozen=True)
class RfmScore:
    r: int
    f: int
    m: int

    def __str__(self) -> str:
        return f"{self.r}{self.f}{self.m}"


def monetary_bucket(cents: int) -> int:
    """Log-spaced bucket of an amount; amounts of zero or less share bucket 0.

    >>> monetary_bucket(0), monetary_bucket(100) < monetary_bucket(101), monetary_bucket(-5)
    (0, True, 0)
    """
    if cents <= 0:
        return 0
    return 1 + int(math.log(cents) / math.log(MONETARY_RESOLUTION))


def score_from_share(worse: int, total: int) -> int:
    """The score of a customer with ``worse`` of ``total`` scored customers strictly worse.

    >>> [score_from_share(w, 10) for w in (0, 1, 2, 5, 8, 9)]
    [1, 1, 2, 3, 5, 5]
    """
    if total <= 0:
        return 1
    return 1 + min(4, (5 * worse) // total)


@dataclass
class Population:
    """Histograms of the scored customers (one per partition; merge with ``merge``)."""

    days: dict[int, int] = field(default_factory=dict)
    orders: dict[int, int] = field(default_factory=dict)
    monetary: dict[int, int] = field(default_factory=dict)
    size: int = 0

    def add(self, values: RawRfmValues, sign: int = 1) -> None:
        for histogram, key in ((self.days, values.last_purchase_day), (self.orders, values.orders),
                               (self.monetary, monetary_bucket(values.monetary_cents))):
            count = histogram.get(key, 0) + sign
            if count < 0:
                raise ValueError(f"removing a value that was never added: {values}")
            if count:
                histogram[key] = count
            else:
                histogram.pop(key, None)
        self.size += sign

    def remove(self, values: RawRfmValues) -> None:
        self.add(values, sign=-1)

    def replace(self, old: RawRfmValues | None, new: RawRfmValues | None) -> None:
        """A customer changed: take the old value out and put the new one in."""
        if old is not None:
            self.remove(old)
        if new is not None:
            self.add(new)

    @classmethod
    def merge(cls, parts: Iterable[Population]) -> Population:
        merged = cls()
        for part in parts:
            for mine, theirs in ((merged.days, part.days), (merged.orders, part.orders),
                                 (merged.monetary, part.monetary)):
                for key, count in theirs.items():
                    mine[key] = mine.get(key, 0) + count
            merged.size += part.size
        return merged

    def to_json(self) -> dict[str, object]:
        return {"days": _pairs(self.days), "orders": _pairs(self.orders),
                "monetary": _pairs(self.monetary), "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Population:
        return cls(days=_unpairs(data["days"]), orders=_unpairs(data["orders"]),
                   monetary=_unpairs(data["monetary"]), size=int(data["size"]))  # type: ignore[call-overload]

    def scorer(self) -> Scorer:
        return Scorer(self)


def _pairs(histogram: dict[int, int]) -> list[list[int]]:
    return [[k, v] for k, v in sorted(histogram.items())]


def _unpairs(pairs: object) -> dict[int, int]:
    return {int(k): int(v) for k, v in pairs}  # type: ignore[attr-defined]


class Scorer:
    """Scores against a fixed population snapshot (cumulative counts, O(log n) per score)."""

    def __init__(self, population: Population) -> None:
        self._size = population.size
        self._days = _cumulative(population.days)
        self._orders = _cumulative(population.orders)
        self._monetary = _cumulative(population.monetary)

    def score(self, values: RawRfmValues) -> RfmScore:
        return RfmScore(
            r=score_from_share(self._days.count_below(values.last_purchase_day), self._size),
            f=score_from_share(self._orders.count_below(values.orders), self._size),
            m=score_from_share(self._monetary.count_below(monetary_bucket(values.monetary_cents)),
                               self._size),
        )


@dataclass(frozen=True)
class _Cumulative:
    keys: list[int]
    below: list[int]  # below[i]: how many values have a key smaller than keys[i]
    total: int

    def count_below(self, key: int) -> int:
        i = bisect_left(self.keys, key)
        return self.below[i] if i < len(self.keys) else self.total


def _cumulative(histogram: dict[int, int]) -> _Cumulative:
    keys = sorted(histogram)
    below, running = [], 0
    for key in keys:
        below.append(running)
        running += histogram[key]
    return _Cumulative(keys, below, running)


def exact_scores(population: Mapping[str, RawRfmValues]) -> dict[str, RfmScore]:
    """The batch reference: scores by exact comparison over all customers (O(n log n)).

    >>> pop = {"a": RawRfmValues(10, 1, 100), "b": RawRfmValues(20, 3, 500), "c": RawRfmValues(20, 2, 50)}
    >>> {k: str(v) for k, v in sorted(exact_scores(pop).items())}
    {'a': '112', 'b': '244', 'c': '221'}
    """
    values = list(population.values())
    n = len(values)
    days = sorted(v.last_purchase_day for v in values)
    orders = sorted(v.orders for v in values)
    money = sorted(v.monetary_cents for v in values)
    return {
        cid: RfmScore(
            r=score_from_share(bisect_left(days, v.last_purchase_day), n),
            f=score_from_share(bisect_left(orders, v.orders), n),
            m=score_from_share(bisect_left(money, v.monetary_cents), n),
        )
        for cid, v in population.items()
    }
